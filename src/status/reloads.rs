//! The last configuration reload and how it went: the log says it once, the status page keeps
//! saying it, so an operator who missed the line still sees that the file on disk is not the
//! one running.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// The outcome of the last reload, if there was one.
#[derive(Debug, Default)]
pub struct Reloads {
    last: Mutex<Option<Reload>>,
}

/// One reload.
#[derive(Debug, Clone)]
pub struct Reload {
    pub at: SystemTime,
    /// `None`: applied; else why it was refused (the running configuration stayed).
    pub refused: Option<String>,
}

impl Reloads {
    /// A reload applied the file.
    pub fn applied(&self) {
        self.set(None);
    }

    /// A reload was refused for `problems`.
    pub fn refused(&self, problems: String) {
        self.set(Some(problems));
    }

    /// The last reload, if any.
    pub fn last(&self) -> Option<Reload> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, refused: Option<String>) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(Reload {
            at: SystemTime::now(),
            refused,
        });
    }
}
