//! Speech for the starter pack: the teacher voice that reads the training
//! sentences, and the sentences it reads.

pub mod sentences;
pub mod teacher;
