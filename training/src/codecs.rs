//! Codecs fitted to the world: the image codec's codebook learns the
//! world's patches (flat colours and the edges of circles and triangles).

use encoders::image::patch::{PatchCodec, PatchConfig};
use encoders::CodecError;

use crate::world::{Split, World, PATCH};

/// Fits an image codec of `codes` entries on `images` training scenes and
/// clips drawn from `seed` (motion frames too, so moving shapes code as
/// well as still ones).
pub fn fit_image_codec(
    seed: u64,
    images: usize,
    codes: usize,
    iterations: usize,
) -> Result<PatchCodec, CodecError> {
    let mut world = World::new(seed);
    let mut pictures = Vec::with_capacity(images);
    while pictures.len() < images {
        pictures.push(world.scene(Split::Train).render());
        let edit = world.edit(Split::Train);
        pictures.push(edit.after.render());
        pictures.extend(
            world
                .motion(Split::Train)
                .render()
                .frames
                .into_iter()
                .take(2),
        );
    }
    pictures.truncate(images);
    PatchCodec::fit(
        &pictures,
        PatchConfig::new(PATCH as usize, codes),
        seed,
        iterations,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        let mse = a
            .iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            / a.len() as f64;
        10.0 * (255f64.powi(2) / mse.max(1e-12)).log10()
    }

    #[test]
    fn the_image_codec_codes_unseen_world_images_losslessly() {
        // The recipe's codec: at most 1,024 codes, so the world's 904
        // distinct patches each get one.
        let codec = fit_image_codec(11, 3000, 1024, 25).unwrap();
        assert_eq!(codec.config().codes, 904);
        // Held-out scenes: combinations the codebook never saw.
        let mut world = World::new(99);
        let mut total = 0.0;
        let n = 100;
        for _ in 0..n {
            let scene = world.scene(Split::HeldOut);
            let image = scene.render();
            let back = codec
                .decode_image(&codec.encode_image(&image).unwrap())
                .unwrap();
            total += psnr(&image.pixels, &back.pixels).min(60.0);
            let read = crate::eval::read::read_scene(&back).unwrap();
            assert_eq!(read.background, scene.background);
            let mut want = scene.objects.clone();
            let mut got = read.objects;
            want.sort_by_key(|o| (o.colour.index(), o.position.index()));
            got.sort_by_key(|o| (o.colour.index(), o.position.index()));
            assert_eq!(got, want, "{}", scene.prompt());
        }
        let mean = total / f64::from(n);
        assert!(mean >= 30.0, "mean PSNR {mean:.1} dB on held-out scenes");
    }

    /// With fewer codes than the world has patches, k-means must merge
    /// some, and still codes the world at 30 dB.
    #[test]
    fn a_smaller_k_means_codebook_still_codes_the_world_at_30_db() {
        let codec = fit_image_codec(11, 600, 256, 30).unwrap();
        assert_eq!(codec.config().codes, 256);
        let mut world = World::new(99);
        let n = 100;
        let total: f64 = (0..n)
            .map(|_| {
                let image = world.scene(Split::HeldOut).render();
                let back = codec
                    .decode_image(&codec.encode_image(&image).unwrap())
                    .unwrap();
                psnr(&image.pixels, &back.pixels).min(60.0)
            })
            .sum();
        let mean = total / f64::from(n);
        assert!(mean >= 30.0, "mean PSNR {mean:.1} dB on held-out scenes");
    }
}
