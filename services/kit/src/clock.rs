//! "Now", as a value the tests can set: lead times, cut-offs, grace periods and day
//! boundaries are all decided against this clock, never against the system time directly.

use chrono::{DateTime, Duration, Utc};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Mutex<DateTime<Utc>>>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that stands at `at` until set or advanced.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Clock(Some(Arc::new(Mutex::new(at))))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(t) => *t.lock().expect("clock lock"),
        }
    }

    /// Moves a manual clock to `at`; the system clock cannot be set.
    pub fn set(&self, at: DateTime<Utc>) {
        if let Some(t) = &self.0 {
            *t.lock().expect("clock lock") = at;
        }
    }

    /// Moves a manual clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.0 {
            let mut g = t.lock().expect("clock lock");
            *g += by;
        }
    }
}
