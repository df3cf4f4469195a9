//! The seven services: their names and the ports of the embedded default.

use std::fmt;
use std::str::FromStr;

/// One of the seven HMS services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Patient,
    Doctor,
    Billing,
    Appointment,
    Prescription,
    Payment,
    Notification,
}

impl Service {
    /// Every service, in port order.
    pub const ALL: [Service; 7] = [
        Service::Patient,
        Service::Doctor,
        Service::Billing,
        Service::Appointment,
        Service::Prescription,
        Service::Payment,
        Service::Notification,
    ];

    /// The lower-case name used in configuration keys, URLs, tokens and logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Patient => "patient",
            Service::Doctor => "doctor",
            Service::Billing => "billing",
            Service::Appointment => "appointment",
            Service::Prescription => "prescription",
            Service::Payment => "payment",
            Service::Notification => "notification",
        }
    }

    /// Offset from the base port (8001 by default): patient 8001 … notification 8007.
    pub fn port_offset(self) -> u16 {
        match self {
            Service::Patient => 0,
            Service::Doctor => 1,
            Service::Billing => 2,
            Service::Appointment => 3,
            Service::Prescription => 4,
            Service::Payment => 5,
            Service::Notification => 6,
        }
    }

    /// The port of the embedded default.
    pub fn default_port(self) -> u16 {
        8001 + self.port_offset()
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
                format!("unknown service '{s}' (one of: {})", names.join(", "))
            })
    }
}
