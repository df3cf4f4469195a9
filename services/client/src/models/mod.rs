//! Request and response models, one module per service.

pub mod appointment;
pub mod billing;
pub mod common;
pub mod doctor;
pub mod events;
pub mod notification;
pub mod patient;
pub mod prescription;

pub use appointment::*;
pub use billing::*;
pub use common::*;
pub use doctor::*;
pub use events::*;
pub use notification::*;
pub use patient::*;
pub use prescription::*;
