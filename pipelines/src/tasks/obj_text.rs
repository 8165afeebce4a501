//! The LLaMA-Mesh text layout as a grammar over the tokenizer's tokens:
//! `v X Y Z` lines with integer coordinates in `0..bins`, then `f A B C`
//! lines with 1-based indices of defined vertices, then end-of-sequence.
//! A token may follow when its text keeps the output a prefix of a mesh
//! that decodes: the first three vertices span a triangle, and every face
//! names three vertices that span one, so no face is degenerate.

use std::cell::RefCell;
use std::sync::Arc;

use crate::generate::{Allowed, TokenConstraint};

/// Tokens whose text could appear in OBJ text, with that text.
pub(crate) type ObjTokens = Arc<Vec<(u32, String)>>;

/// The candidate tokens of a vocabulary: texts made only of digits,
/// `v`, `f`, space and newline.
pub(crate) fn obj_tokens(texts: impl Iterator<Item = (u32, String)>) -> ObjTokens {
    Arc::new(
        texts
            .filter(|(_, t)| {
                !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || " vf\n".contains(c))
            })
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Line {
    Start,
    /// Read `v` or `f`; a space comes next.
    Tag(char),
    /// Numbers of the line so far, and the digits of the one being read.
    Numbers {
        tag: char,
        values: Vec<u32>,
        digits: String,
    },
}

/// The mesh so far: committed vertices and faces, and the current line.
#[derive(Debug, Clone)]
struct Mesh {
    vertices: Vec<[u32; 3]>,
    faces: usize,
    line: Line,
}

pub(crate) struct ObjText {
    tokens: ObjTokens,
    end: Vec<u32>,
    bins: u32,
    max_faces: usize,
    mesh: Mesh,
    ended: bool,
    memo: RefCell<Option<MemoEntry>>,
}

/// (line tag, numbers so far, vertex count) and the values allowed next.
type MemoEntry = ((char, Vec<u32>, usize), Arc<Vec<u32>>);

impl ObjText {
    pub(crate) fn new(tokens: ObjTokens, end: Vec<u32>, bins: u32, max_faces: usize) -> ObjText {
        ObjText {
            tokens,
            end,
            bins,
            max_faces: max_faces.max(1),
            mesh: Mesh {
                vertices: Vec::new(),
                faces: 0,
                line: Line::Start,
            },
            ended: false,
            memo: RefCell::new(None),
        }
    }

    fn max_vertices(&self) -> usize {
        3 * self.max_faces
    }

    /// The state after reading `text`, or None when it breaks the grammar.
    fn read(&self, mut mesh: Mesh, text: &str) -> Option<Mesh> {
        for c in text.chars() {
            mesh = self.step(mesh, c)?;
        }
        Some(mesh)
    }

    fn step(&self, mut mesh: Mesh, c: char) -> Option<Mesh> {
        mesh.line = match std::mem::replace(&mut mesh.line, Line::Start) {
            Line::Start => match c {
                'v' if mesh.faces == 0 && mesh.vertices.len() < self.max_vertices() => {
                    Line::Tag('v')
                }
                'f' if mesh.vertices.len() >= 3 && mesh.faces < self.max_faces => Line::Tag('f'),
                _ => return None,
            },
            Line::Tag(tag) if c == ' ' => Line::Numbers {
                tag,
                values: Vec::new(),
                digits: String::new(),
            },
            Line::Tag(_) => return None,
            Line::Numbers {
                tag,
                mut values,
                mut digits,
            } => {
                let allowed = self.values(&mesh, tag, &values);
                if c.is_ascii_digit() {
                    digits.push(c);
                    if !allowed.iter().any(|&v| has_prefix(v, &digits)) {
                        return None;
                    }
                    Line::Numbers {
                        tag,
                        values,
                        digits,
                    }
                } else {
                    let value: u32 = digits.parse().ok()?;
                    if !allowed.contains(&value) {
                        return None;
                    }
                    values.push(value);
                    match (c, values.len()) {
                        (' ', 1 | 2) => Line::Numbers {
                            tag,
                            values,
                            digits: String::new(),
                        },
                        ('\n', 3) => {
                            if tag == 'v' {
                                mesh.vertices.push([values[0], values[1], values[2]]);
                            } else {
                                mesh.faces += 1;
                            }
                            Line::Start
                        }
                        _ => return None,
                    }
                }
            }
        };
        Some(mesh)
    }

    /// The values the next number of a `tag` line may take, given the
    /// numbers before it on the line. Every candidate token starts from the
    /// same state, so the last answer is kept.
    fn values(&self, mesh: &Mesh, tag: char, values: &[u32]) -> Arc<Vec<u32>> {
        let key = (tag, values.to_vec(), mesh.vertices.len());
        if let Some((k, v)) = &*self.memo.borrow() {
            if *k == key {
                return v.clone();
            }
        }
        let v = Arc::new(self.compute_values(mesh, tag, values));
        *self.memo.borrow_mut() = Some((key, v.clone()));
        v
    }

    fn compute_values(&self, mesh: &Mesh, tag: char, values: &[u32]) -> Vec<u32> {
        let all = 0..self.bins;
        if tag == 'f' {
            // 1-based indices; distinct positions, and the third off the
            // line through the first two. Any first vertex works: the first
            // three vertices already span a triangle.
            let position = |i: u32| mesh.vertices[i as usize - 1];
            let count = mesh.vertices.len() as u32;
            return (1..=count)
                .filter(|&i| match values {
                    [] => true,
                    [a] => position(i) != position(*a),
                    [a, b] => !collinear(position(*a), position(*b), position(i)),
                    _ => false,
                })
                .collect();
        }
        let v = &mesh.vertices;
        match (v.len(), values) {
            // The second vertex: not the first again.
            (1, [x, y]) if [*x, *y] == v[0][..2] => all.filter(|&z| z != v[0][2]).collect(),
            // The third vertex: off the line through the first two.
            (2, [x]) if v[0][..2] == v[1][..2] && *x == v[0][0] => {
                // The line runs along z: this x and y = theirs would leave no z.
                all.filter(|&y| y != v[0][1]).collect()
            }
            (2, [x, y]) => all
                .filter(|&z| !collinear(v[0], v[1], [*x, *y, z]))
                .collect(),
            _ => all.collect(),
        }
    }
}

/// Whether `value` written in decimal starts with `digits` ("05" starts no
/// value: numbers have no leading zeros).
fn has_prefix(value: u32, digits: &str) -> bool {
    let Ok(prefix) = digits.parse::<u64>() else {
        return false;
    };
    let len = if value == 0 {
        1
    } else {
        value.ilog10() as usize + 1
    };
    len >= digits.len()
        && u64::from(value) / 10u64.pow((len - digits.len()) as u32) == prefix
        && !(digits.len() > 1 && digits.starts_with('0'))
}

fn collinear(a: [u32; 3], b: [u32; 3], c: [u32; 3]) -> bool {
    let d = |p: [u32; 3], q: [u32; 3]| {
        q.map(i64::from)
            .iter()
            .zip(p.map(i64::from))
            .map(|(q, p)| q - p)
            .collect::<Vec<_>>()
    };
    let (u, v) = (d(a, b), d(a, c));
    u[1] * v[2] == u[2] * v[1] && u[2] * v[0] == u[0] * v[2] && u[0] * v[1] == u[1] * v[0]
}

impl TokenConstraint for ObjText {
    fn allowed(&mut self) -> Allowed {
        if self.ended {
            return Allowed::Done;
        }
        let mut ids: Vec<u32> = self
            .tokens
            .iter()
            .filter(|(_, text)| self.read(self.mesh.clone(), text).is_some())
            .map(|(id, _)| *id)
            .collect();
        if self.mesh.line == Line::Start && self.mesh.faces > 0 {
            ids.extend(&self.end);
        }
        Allowed::tokens(ids)
    }

    fn finished(&mut self) -> bool {
        self.ended
    }

    fn accept(&mut self, token: u32) {
        if self.end.contains(&token) {
            self.ended = true;
            return;
        }
        let text = self
            .tokens
            .iter()
            .find(|(id, _)| *id == token)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        if let Some(mesh) = self.read(self.mesh.clone(), text) {
            self.mesh = mesh;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Single characters plus a few merged tokens, like a small BPE vocabulary.
    fn vocab() -> ObjTokens {
        let texts = [
            "v",
            "f",
            " ",
            "\n",
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "6",
            "7",
            "8",
            "9",
            "10",
            "v 0",
            "\nv",
            " 1",
            "00",
            "x",
            "f 1 2 3\n",
        ];
        obj_tokens(
            texts
                .iter()
                .enumerate()
                .map(|(i, t)| (i as u32, t.to_string())),
        )
    }

    fn run(pick: impl Fn(&[u32]) -> u32) -> String {
        let tokens = vocab();
        let mut c = ObjText::new(tokens.clone(), vec![99], 12, 2);
        let mut text = String::new();
        for _ in 0..1000 {
            match c.allowed() {
                Allowed::Done => return text,
                Allowed::Only(ranges) => {
                    let ids: Vec<u32> = ranges.iter().flat_map(|r| r.clone()).collect();
                    assert!(!ids.is_empty(), "stuck after {text:?}");
                    let id = pick(&ids);
                    c.accept(id);
                    if id != 99 {
                        text.push_str(&tokens.iter().find(|(i, _)| *i == id).unwrap().1);
                    }
                }
                Allowed::Any | Allowed::Folded { .. } => panic!(),
            }
        }
        panic!("never ended: {text:?}")
    }

    #[test]
    fn every_path_through_the_grammar_decodes() {
        // Smallest id, largest id, and a pseudo-random walk: each output
        // parses as a mesh with a non-degenerate face.
        let mut seed = 7u64;
        type Walk = Box<dyn Fn(&[u32]) -> u32>;
        let walks: Vec<Walk> = vec![Box::new(|ids| ids[0]), Box::new(|ids| ids[ids.len() - 1])];
        for walk in walks {
            let text = run(walk);
            let q = encoders::mesh::from_obj_text(&text, 12).unwrap();
            assert!(!q.faces.is_empty(), "{text}");
        }
        for _ in 0..20 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = seed;
            let text = run(move |ids| ids[(s >> 33) as usize % ids.len()]);
            assert!(encoders::mesh::from_obj_text(&text, 12).is_ok(), "{text}");
        }
    }

    #[test]
    fn leading_zeros_and_out_of_range_values_are_refused() {
        let c = ObjText::new(vocab(), vec![99], 12, 2);
        let start = c.mesh.clone();
        assert!(c.read(start.clone(), "v 0 1").is_some());
        assert!(c.read(start.clone(), "v 00").is_none());
        assert!(c.read(start.clone(), "v 12").is_none(), "bins are 0..12");
        assert!(c.read(start.clone(), "f").is_none(), "no vertices yet");
        assert!(
            c.read(start, "v 1 1 1\nv 1 1 1\n").is_none(),
            "a repeated first vertex"
        );
    }
}
