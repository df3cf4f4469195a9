//! Calling other services: the shared typed client, with this service's token and the current
//! request's correlation id and trace context attached. An unreachable or failing dependency
//! becomes 503 `dependency_unavailable` naming it (see `From<ClientError> for Error`).

use crate::auth::{Keys, Role};
use crate::correlation;
use crate::Service;
use hms_client::{HmsClient, ServiceUrls};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Downstream {
    base: HmsClient,
    keys: Arc<Keys>,
    me: Service,
}

impl Downstream {
    pub fn new(me: Service, urls: ServiceUrls, keys: Arc<Keys>, timeout: Duration) -> Self {
        Downstream {
            base: HmsClient::new(urls, timeout),
            keys,
            me,
        }
    }

    /// A client for one call chain: service token, correlation id and `traceparent` set.
    pub fn client(&self) -> HmsClient {
        let token = self.keys.issue(
            Role::Service,
            &format!("service:{}", self.me.name()),
            None,
            chrono::Duration::minutes(5),
        );
        let client = self.base.clone().with_token(token);
        match correlation::current() {
            Some(ctx) => client.with_correlation(&ctx.correlation_id, Some(&ctx.traceparent)),
            None => client,
        }
    }
}
