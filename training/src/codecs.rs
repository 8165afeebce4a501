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
    fn the_image_codec_codes_unseen_world_images_at_30_db() {
        let codec = fit_image_codec(11, 600, 256, 30).unwrap();
        // Held-out scenes: combinations the codebook never saw.
        let mut world = World::new(99);
        let mut total = 0.0;
        let n = 100;
        for _ in 0..n {
            let image = world.scene(Split::HeldOut).render();
            let back = codec
                .decode_image(&codec.encode_image(&image).unwrap())
                .unwrap();
            total += psnr(&image.pixels, &back.pixels).min(60.0);
        }
        let mean = total / f64::from(n);
        eprintln!("image codec: mean PSNR {mean:.1} dB on {n} held-out scenes");
        assert!(mean >= 30.0, "mean PSNR {mean:.1} dB on held-out scenes");
    }
}
