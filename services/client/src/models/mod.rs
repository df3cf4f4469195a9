//! Request and response models, one module per service.

pub mod appointment;
pub mod common;
pub mod doctor;
pub mod events;
pub mod patient;

pub use appointment::*;
pub use common::*;
pub use doctor::*;
pub use events::*;
pub use patient::*;
