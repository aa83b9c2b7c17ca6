//! The settings every stack gets, so that the comparison is fair.
//!
//! One struct, [`ServerSettings`], carries everything a stack needs to start.
//! Each stack maps [`Profile`] onto its own configuration knobs; where a
//! stack cannot honour a setting, its file says so. [`EchoPolicy`] says
//! how a server writes its echoes.

use std::net::SocketAddr;

use crate::placement::Placement;

/// The largest message and frame every stack must accept under the suite's
/// settings. The brief asks for at least 16 MiB; 32 MiB leaves headroom so
/// that a 16 MiB message plus framing never sits on a limit's edge.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// The read buffer used by the `small-buffers` profile, for stacks that let
/// you size it. tungstenite's default is 128 KiB per connection.
pub const SMALL_READ_BUFFER_BYTES: usize = 4 << 10;

/// Which configuration a server runs with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The suite's settings: TCP_NODELAY on, compression off, message and
    /// frame limits at [`MAX_MESSAGE_BYTES`], buffers at the stack's default.
    #[value(help = "TCP_NODELAY, no compression, raised message limits, default buffers")]
    Suite,
    /// The suite's settings with the read buffer shrunk to
    /// [`SMALL_READ_BUFFER_BYTES`] where the stack allows it. Used to show
    /// what buffer defaults cost per idle connection.
    #[value(help = "suite, with a small read buffer where the stack allows it")]
    SmallBuffers,
    /// The stack's own defaults, untouched (compression included where the
    /// stack turns it on by default). Only the memory benchmark uses it.
    #[value(help = "the stack's own defaults, untouched")]
    Defaults,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Suite, Profile::SmallBuffers, Profile::Defaults];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Suite => "suite",
            Profile::SmallBuffers => "small-buffers",
            Profile::Defaults => "defaults",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown profile {s:?}: expected suite, small-buffers or defaults")
            })
    }

    /// The message limit a stack should enforce, or `None` to keep its own.
    pub fn max_message_bytes(self) -> Option<usize> {
        match self {
            Profile::Suite | Profile::SmallBuffers => Some(MAX_MESSAGE_BYTES),
            Profile::Defaults => None,
        }
    }
}

/// Environment variable that selects the echo write policy when no
/// `--echo` is given.
pub const ECHO_ENV: &str = "WSBENCH_ECHO";

/// How a server writes its echoes: after each one, or in batches while
/// more input is already buffered. Each stack's notes say how it maps this
/// onto its library and which one the library's own examples use.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum EchoPolicy {
    /// Each echo is written and flushed before the next message is read
    /// (`send(msg).await`): one write per echo.
    #[default]
    #[value(help = "write and flush each echo before reading the next message")]
    FlushEach,
    /// Echoes are fed while more input is already buffered and flushed when
    /// the read side would block, so a lone message is still echoed at once.
    #[value(help = "feed echoes while input is buffered, flush when the read would block")]
    Batched,
}

impl EchoPolicy {
    pub const ALL: [EchoPolicy; 2] = [EchoPolicy::FlushEach, EchoPolicy::Batched];

    pub fn as_str(self) -> &'static str {
        match self {
            EchoPolicy::FlushEach => "flush-each",
            EchoPolicy::Batched => "batched",
        }
    }

    pub fn parse(s: &str) -> anyhow::Result<EchoPolicy> {
        EchoPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                anyhow::anyhow!("unknown echo policy {s:?}: expected flush-each or batched")
            })
    }

    /// The policy named by `WSBENCH_ECHO`, or flush-each.
    pub fn from_env() -> anyhow::Result<EchoPolicy> {
        match std::env::var(ECHO_ENV) {
            Ok(s) => EchoPolicy::parse(s.trim()).map_err(|e| anyhow::anyhow!("{ECHO_ENV}: {e}")),
            Err(_) => Ok(EchoPolicy::default()),
        }
    }
}

impl std::fmt::Display for EchoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a server serves on every connection it accepts.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// Every message comes back to its sender (the suite's echo contract).
    #[default]
    #[value(help = "every message comes back to its sender")]
    Echo,
    /// One room: every message goes to every connection, the sender
    /// included (see `stacks::room`).
    #[value(help = "one room: every message goes to every connection, the sender included")]
    Broadcast,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Broadcast => "broadcast",
        }
    }
}

/// What a connection's bytes travel in.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `ws://`: plain TCP.
    #[default]
    #[value(help = "ws://: plain TCP")]
    Plain,
    /// `wss://`: TLS over TCP, with the certificate [`crate::tls`] makes at
    /// start.
    #[value(help = "wss://: TLS, with a certificate made at start")]
    Tls,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Plain, Transport::Tls];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
        }
    }

    /// The URL scheme: `ws` or `wss`.
    pub fn scheme(self) -> &'static str {
        match self {
            Transport::Plain => "ws",
            Transport::Tls => "wss",
        }
    }
}

/// Whether a server accepts permessage-deflate (RFC 7692) when a client
/// offers it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Refused, as the suite's settings have it.
    #[default]
    #[value(help = "permessage-deflate refused (the suite's setting)")]
    Off,
    /// Accepted with the library's own default parameters (each stack's
    /// notes say which: window bits, level, context takeover) where the
    /// stack supports it ([`crate::stacks::StackInfo::deflate`]).
    #[value(help = "permessage-deflate accepted where the stack supports it")]
    Deflate,
}

impl Compression {
    pub const ALL: [Compression; 2] = [Compression::Off, Compression::Deflate];

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Deflate => "deflate",
        }
    }
}

/// How results and reports name a pair of layers: "plain", "tls",
/// "deflate" or "tls+deflate" (the secure group's cells).
pub fn layers_label(transport: Transport, compression: Compression) -> &'static str {
    match (transport, compression) {
        (Transport::Plain, Compression::Off) => "plain",
        (Transport::Tls, Compression::Off) => "tls",
        (Transport::Plain, Compression::Deflate) => "deflate",
        (Transport::Tls, Compression::Deflate) => "tls+deflate",
    }
}

/// Everything a stack needs to start one server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Worker threads of the server's runtime (1 by default, as in the
    /// published single-threaded server benchmarks).
    pub threads: usize,
    /// Where the server's threads may run.
    pub placement: Placement,
    pub profile: Profile,
    /// How the server writes its echoes.
    pub echo: EchoPolicy,
    /// Echo, or the broadcast room.
    pub service: Service,
    /// Plain TCP or TLS.
    pub transport: Transport,
    /// permessage-deflate accepted or not. A stack without it refuses to
    /// start with [`Compression::Deflate`] rather than serve something else.
    pub compression: Compression,
    /// CPUs for the server's threads where a bench chooses them (the cores
    /// group gives each thread count CPUs of its own); `None`: the
    /// placement's.
    pub cpus: Option<Vec<usize>>,
}

impl ServerSettings {
    /// CPUs for the server's threads, or `None` for no pinning.
    pub fn server_cpus(&self) -> Option<Vec<usize>> {
        self.cpus.clone().or_else(|| self.placement.server_cpus())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            placement: Placement::from_env().unwrap_or_default(),
            profile: Profile::Suite,
            echo: EchoPolicy::from_env().unwrap_or_default(),
            service: Service::Echo,
            transport: Transport::Plain,
            compression: Compression::Off,
            cpus: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_names_are_the_parse_names() {
        use clap::ValueEnum;
        for p in Profile::ALL {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
            assert_eq!(Profile::parse(p.as_str()).unwrap(), p);
        }
        assert_eq!(Profile::value_variants(), &Profile::ALL[..]);
        for p in EchoPolicy::ALL {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
            assert_eq!(EchoPolicy::parse(p.as_str()).unwrap(), p);
        }
        assert_eq!(EchoPolicy::value_variants(), &EchoPolicy::ALL[..]);
        assert!(EchoPolicy::parse("flush").is_err());
    }
}
