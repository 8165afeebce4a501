//! What the teacher reads: the world's own sentences (its prompts and
//! instructions), sentences of words drawn from the whole lexicon so the
//! model learns every phoneme in many neighbours, and, for evaluation
//! only, ordinary English sentences it never trains on.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{Split, World};
use encoders::speech_text::lexicon::Lexicon;

/// Sentences outside the world, for evaluation only: the first five lists
/// of the Harvard sentences (IEEE Recommended Practice for Speech Quality
/// Measurements, 1969; public domain). Fifty, so that one sentence misheard
/// moves the rate by about two points, not five.
pub const OUTSIDE: &[&str] = &[
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
    "A king ruled the state in the early days.",
    "The ship was torn apart on the sharp reef.",
    "Sickness kept him home the third week.",
    "The wide road shimmered in the hot sun.",
    "The lazy cow lay in the cool grass.",
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "Hop over the fence and plunge in.",
    "The friendly gang left the drug store.",
    "Mesh wire keeps chicks inside.",
];

/// One world sentence of `split`: a scene, a clip, a solid or an edit.
pub fn world_sentence(world: &mut World, split: Split, kind: usize) -> String {
    match kind % 4 {
        0 => world.scene(split).prompt(),
        1 => world.motion(split).prompt(),
        2 => world.solid(split).prompt(),
        _ => world.edit(split).instruction,
    }
}

/// Words of the lexicon a sentence may use: plain lowercase words of two
/// to ten letters, sorted (a deterministic pool for seeded draws).
pub fn word_pool(lexicon: &Lexicon) -> Vec<String> {
    lexicon
        .entries()
        .into_iter()
        .map(|(w, _)| w)
        .filter(|w| (2..=10).contains(&w.len()) && w.chars().all(|c| c.is_ascii_lowercase()))
        .map(str::to_string)
        .collect()
}

/// A sentence of three to eight words drawn from `pool` by `seed`; never
/// one of [`OUTSIDE`]'s sentences.
pub fn broad_sentence(pool: &[String], seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = rng.random_range(3..=8);
    let words: Vec<&str> = (0..n)
        .filter_map(|_| pool.get(rng.random_range(0..pool.len().max(1))))
        .map(String::as_str)
        .collect();
    words.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_seeded_and_draw_on_the_whole_pool() {
        let lex = Lexicon::parse(
            "cat K AE1 T\ndog D AO1 G\nsun S AH1 N\nx EH1 K S\nrock'n R AA1 K AH0 N\nred R EH1 D\n",
            "t",
        )
        .unwrap();
        let pool = word_pool(&lex);
        assert_eq!(
            pool,
            ["cat", "dog", "red", "sun"],
            "plain words of 2+ letters"
        );
        assert_eq!(broad_sentence(&pool, 3), broad_sentence(&pool, 3));
        let words: std::collections::BTreeSet<String> = (0..50)
            .flat_map(|s| {
                broad_sentence(&pool, s)
                    .split(' ')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(words.len(), 4);
        let mut w = World::new(1);
        let s: Vec<String> = (0..4)
            .map(|k| world_sentence(&mut w, Split::Train, k))
            .collect();
        assert!(
            s[1].contains("moves") && s.iter().all(|x| !x.is_empty()),
            "{s:?}"
        );
    }
}
