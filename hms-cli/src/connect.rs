//! Where the services are and which token to send.
//!
//! Services: `--url` (one base behind a path-routing ingress), else `--host`/`--base-port`
//! (the embedded default's ports), then any `HMS_<SERVICE>_URL` overrides one service.
//!
//! Token, first found: `--token`, `HMS_TOKEN`, the profile's `token` in
//! `~/.config/hmsctl/config.toml`, then the embedded default's `<data-dir>/admin.token` (so
//! `hmsctl status` works right after `hms-daemon` starts on this machine).
//!
//! ```toml
//! [profiles.default]
//! url = "https://hms.example.org"   # one base URL behind a path-routing ingress, or:
//! host = "127.0.0.1"
//! base_port = 8001
//! token = "eyJ…"
//! ```

use hms_client::{HmsClient, ServiceUrls};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One named connection.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Profile {
    pub url: Option<String>,
    pub host: Option<String>,
    pub base_port: Option<u16>,
    pub token: Option<String>,
}

/// What the command line says about the connection.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Option<String>,
    pub host: Option<String>,
    pub base_port: Option<u16>,
    pub token: Option<String>,
    pub profile: String,
    pub data_dir: PathBuf,
}

fn config_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("HMSCTL_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok()?;
    Some(home.join("hmsctl").join("config.toml"))
}

fn profile(name: &str) -> Result<Profile, String> {
    let Some(path) = config_path() else {
        return Ok(Profile::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profile::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    match file.profiles.get(name) {
        Some(p) => Ok(p.clone()),
        None if name == "default" => Ok(Profile::default()),
        None => Err(format!("no profile '{name}' in {}", path.display())),
    }
}

impl Target {
    /// Where a token was looked for, in order (said when none was found).
    pub fn token_places(&self) -> String {
        let config = config_path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "~/.config/hmsctl/config.toml".into());
        format!(
            "--token, HMS_TOKEN, the profile '{}' in {config}, and {}",
            self.profile,
            self.data_dir.join("admin.token").display()
        )
    }

    /// Whether any of those places holds a token.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
            || profile(&self.profile).is_ok_and(|p| p.token.is_some())
            || self.data_dir.join("admin.token").exists()
    }

    /// The client for this target.
    pub fn client(&self) -> Result<HmsClient, String> {
        let p = profile(&self.profile)?;
        let urls = match self.url.clone().or(p.url.clone()) {
            Some(u) => ServiceUrls::behind_ingress(&u),
            None => ServiceUrls::with_base_port(
                self.host
                    .as_deref()
                    .or(p.host.as_deref())
                    .unwrap_or("127.0.0.1"),
                self.base_port.or(p.base_port).unwrap_or(8001),
            ),
        };
        let client = HmsClient::new(urls.with_env_overrides(), Duration::from_secs(15));
        let token = self.token.clone().or(p.token).or_else(|| {
            std::fs::read_to_string(self.data_dir.join("admin.token"))
                .ok()
                .map(|t| t.trim().to_string())
        });
        Ok(match token {
            Some(t) => client.with_token(t),
            None => client,
        })
    }
}
