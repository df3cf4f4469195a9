//! Ways a message leaves the hospital, chosen by configuration per channel:
//! `record` (kept as sent; staff see it as an alert), `smtp` (e-mail through a relay),
//! `webhook` (POSTed as JSON to a configured URL, e.g. an SMS gateway). URLs come from
//! configuration only, never from a request.

use hms_kit::config::Config;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::time::Duration;

/// One message to send.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outgoing {
    pub notification_id: i64,
    pub channel: String,
    pub recipient: String,
    pub event_type: String,
    pub message: String,
}

#[derive(Clone)]
pub enum Provider {
    Record,
    Webhook {
        url: String,
        http: reqwest::Client,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Provider {
    /// The provider configured for `channel` (`EMAIL` or `SMS`).
    pub fn for_channel(cfg: &Config, channel: &str) -> anyhow::Result<Provider> {
        Ok(match Kind::of(cfg, channel) {
            Kind::Webhook => Provider::Webhook {
                url: cfg
                    .notification_webhook_url
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("notification_webhook_url is not set"))?,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()?,
            },
            Kind::Smtp => {
                let (host, port) = smtp_host(cfg.smtp_url.as_deref().unwrap_or_default())?;
                // Plain SMTP to a relay on the hospital's network (a local MTA does TLS onward).
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .timeout(Some(Duration::from_secs(10)))
                    .build();
                Provider::Smtp {
                    transport,
                    from: cfg.smtp_from.parse()?,
                }
            }
            Kind::Record => Provider::Record,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Provider::Record => "record",
            Provider::Webhook { .. } => "webhook",
            Provider::Smtp { .. } => "smtp",
        }
    }

    /// Sends one message; the error says why, for `last_error` (never the recipient).
    pub async fn send(&self, m: &Outgoing) -> Result<(), String> {
        match self {
            Provider::Record => Ok(()),
            Provider::Webhook { url, http } => {
                let resp = http.post(url).json(m).send().await.map_err(|e| {
                    if e.is_timeout() {
                        "webhook timed out".to_string()
                    } else {
                        "webhook unreachable".to_string()
                    }
                })?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("webhook answered {}", resp.status()))
                }
            }
            Provider::Smtp { transport, from } => {
                let to: Mailbox = m
                    .recipient
                    .parse()
                    .map_err(|_| "the recipient is not a valid e-mail address".to_string())?;
                let email = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject(&m.event_type))
                    .body(m.message.clone())
                    .map_err(|e| format!("could not build the e-mail: {e}"))?;
                transport.send(email).await.map(|_| ()).map_err(|e| {
                    format!(
                        "smtp: {}",
                        if e.is_transient() {
                            "temporary failure"
                        } else {
                            "refused"
                        }
                    )
                })
            }
        }
    }
}

/// Which provider is configured for a channel; any name but `webhook` and `smtp` is `record`
/// (the default), decided here alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Record,
    Webhook,
    Smtp,
}

impl Kind {
    fn of(cfg: &Config, channel: &str) -> Kind {
        let name = if channel == "EMAIL" {
            &cfg.email_provider
        } else {
            &cfg.sms_provider
        };
        match name.as_str() {
            "webhook" => Kind::Webhook,
            "smtp" => Kind::Smtp,
            _ => Kind::Record,
        }
    }
}

/// The channels whose messages are sent by being recorded (`record`): such a message is
/// recorded as sent, in the transaction that makes it. Passing it through the delivery loop
/// claimed and marked each message with a write of its own for a send that does nothing —
/// two of the four writes a booking's confirmations cost the notification service.
#[derive(Debug, Clone, Copy)]
pub struct SentWhenRecorded {
    email: bool,
    sms: bool,
}

impl SentWhenRecorded {
    pub fn of(cfg: &Config) -> Self {
        let record = |channel| Kind::of(cfg, channel) == Kind::Record;
        SentWhenRecorded {
            email: record("EMAIL"),
            sms: record("SMS"),
        }
    }

    pub fn channel(&self, channel: &str) -> bool {
        if channel == "EMAIL" {
            self.email
        } else {
            self.sms
        }
    }
}

/// `smtp://relay.internal:25` → (`relay.internal`, 25).
fn smtp_host(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("smtp://")
        .ok_or_else(|| anyhow::anyhow!("smtp_url must look like smtp://host:port"))?;
    let rest = rest.trim_end_matches('/');
    Ok(match rest.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse()?),
        None => (rest.to_string(), 25),
    })
}

fn subject(event_type: &str) -> &'static str {
    match event_type {
        "appointment.booked" => "Appointment confirmed",
        "appointment.rescheduled" => "Appointment moved",
        "appointment.cancelled" => "Appointment cancelled",
        "appointment.no_show" => "We missed you",
        "appointment.reminder" => "Appointment reminder",
        "bill.created" => "Your bill",
        "payment.captured" => "Payment received",
        "payment.refunded" => "Refund issued",
        _ => "Message from the hospital",
    }
}
