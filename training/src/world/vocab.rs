//! The world's vocabulary: every attribute with its words.

use serde::Serialize;

/// Declares a closed set of words: `ALL`, the word, and its index.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn word(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }

            /// Position in [`Self::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

/// "on a blue background", how every world sentence ends.
pub fn on_background(background: Colour) -> String {
    let word = background.word();
    format!("on {} {word} background", article(word))
}

/// "a" or "an", as the word after it begins: "an orange circle".
pub fn article(next: &str) -> &'static str {
    match next.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

vocabulary! {
    /// Flat shapes of the image world.
    Shape { Circle => "circle", Square => "square", Triangle => "triangle" }
}

vocabulary! {
    Colour {
        Red => "red", Green => "green", Blue => "blue", Yellow => "yellow",
        White => "white", Purple => "purple", Orange => "orange", Black => "black",
    }
}

vocabulary! {
    Size { Small => "small", Large => "large" }
}

vocabulary! {
    /// Where a shape sits: a 3 x 3 grid of places.
    Position {
        TopLeft => "top left", Top => "top", TopRight => "top right",
        Left => "left", Center => "center", Right => "right",
        BottomLeft => "bottom left", Bottom => "bottom", BottomRight => "bottom right",
    }
}

vocabulary! {
    /// Directions of motion in videos.
    Direction { Left => "left", Right => "right", Up => "up", Down => "down" }
}

vocabulary! {
    /// Solids of the mesh world.
    Solid {
        Cube => "cube", Sphere => "sphere", Cylinder => "cylinder",
        Cone => "cone", Torus => "torus", Pyramid => "pyramid",
    }
}

vocabulary! {
    /// A solid's proportions: stretched along its height, squashed, or neither.
    Proportion { Plain => "plain", Tall => "tall", Flat => "flat" }
}

impl Colour {
    /// The colour's pixels: saturated and far apart, so a colour is told
    /// from a patch's mean.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 170, 60],
            Colour::Blue => [30, 70, 220],
            Colour::Yellow => [240, 215, 35],
            Colour::White => [245, 245, 245],
            Colour::Purple => [135, 50, 185],
            Colour::Orange => [245, 135, 20],
            Colour::Black => [15, 15, 15],
        }
    }
}

impl Position {
    /// Row and column in the 3 x 3 grid.
    pub fn cell(self) -> (usize, usize) {
        (self.index() / 3, self.index() % 3)
    }

    pub fn from_cell(row: usize, column: usize) -> Option<Position> {
        (row < 3 && column < 3).then(|| Position::ALL[row * 3 + column])
    }

    /// The phrase that places a shape: "at the top left", "on the left",
    /// "in the center".
    pub fn phrase(self) -> String {
        match self {
            Position::Left | Position::Right => format!("on the {}", self.word()),
            Position::Center => "in the center".into(),
            _ => format!("at the {}", self.word()),
        }
    }
}

impl Direction {
    /// Pixels moved per frame along x and y (y grows downwards).
    pub fn step(self) -> (i32, i32) {
        match self {
            Direction::Left => (-1, 0),
            Direction::Right => (1, 0),
            Direction::Up => (0, -1),
            Direction::Down => (0, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_indices_follow_the_declaration() {
        assert_eq!(Colour::ALL.len(), 8);
        assert_eq!(Position::ALL.len(), 9);
        assert_eq!(Solid::ALL.len(), 6);
        assert_eq!(Position::BottomRight.cell(), (2, 2));
        assert_eq!(Position::from_cell(1, 0), Some(Position::Left));
        assert_eq!(Position::TopLeft.phrase(), "at the top left");
        assert_eq!(Position::Left.phrase(), "on the left");
        assert_eq!(Position::Center.phrase(), "in the center");
        assert!(Shape::ALL.iter().enumerate().all(|(i, s)| s.index() == i));
    }

    #[test]
    fn colours_are_far_apart() {
        for (i, a) in Colour::ALL.iter().enumerate() {
            for b in &Colour::ALL[i + 1..] {
                let d: i32 = a
                    .rgb()
                    .iter()
                    .zip(b.rgb())
                    .map(|(&x, y)| (i32::from(x) - i32::from(y)).pow(2))
                    .sum();
                assert!(d > 60 * 60, "{a} and {b} are too close");
            }
        }
    }
}
