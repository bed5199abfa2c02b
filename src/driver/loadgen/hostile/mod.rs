//! `tessera perf hostile`: does a healthy publisher/subscriber pair keep its throughput and latency while hostile
//! clients load the relay? (docs/PERFORMANCE.md §Hostile load)
//!
//! ```text
//! raise RLIMIT_NOFILE ─▶ start our relay child (--shards S)
//!   ─▶ W-e2e with the healthy pair (1 publisher connection, 1 subscriber connection) ─▶ idle figures
//!   ─▶ Attack::start: idle TCP, silent WebSockets, saturating subscribers, reply flooders (attackers.rs)
//!   ─▶ wait until the attack is established ─▶ the same W-e2e again ─▶ attacked figures
//!   ─▶ Attack::stop ─▶ relay peak RSS, SIGTERM ─▶ HostileReport (perf::hostile: ratios, targets)
//! ```
//! The pair connects from 127.0.0.1, the attackers from other loopback addresses (127.0.1.x), so limits per
//! source address apply to the attackers and never to the pair.

mod attackers;
pub mod raw_ws;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::e2e::{self, E2eConfig, E2eError};
use super::process::{raise_nofile_limit, ProcSample, RelayProcess, RelayProcessError};
use crate::driver::client::conn::resolve;
use crate::perf::hostile::HostileReport;
pub use attackers::{Attack, AttackPlan};

/// File descriptors needed beyond the attack's and the pair's sockets.
const FD_MARGIN: u64 = 512;
/// How long the attack may take to reach its full size before the measured run starts anyway.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Clone, Debug)]
pub struct HostileConfig {
    /// Measured seconds per W-e2e phase.
    pub seconds: u64,
    /// Shards of the relay we start.
    pub shards: usize,
    /// Load generator executors for the healthy pair.
    pub threads: usize,
    /// TCP connections that send nothing.
    pub idle_tcp: usize,
    /// Upgraded WebSockets that never send HELLO.
    pub silent_ws: usize,
    /// Connections that SUBSCRIBE saturated filters.
    pub saturating: usize,
    /// Connections that pipeline PUBLISHes and never read.
    pub flooders: usize,
    /// Loopback source addresses the attackers spread over (127.0.1.1 onwards).
    pub sources: usize,
    /// The bound the relay's peak RSS must stay under, bytes.
    pub rss_bound_bytes: u64,
}

/// Runs the benchmark; progress goes to `progress`.
pub fn run(config: &HostileConfig, progress: &mut dyn Write) -> Result<HostileReport, E2eError> {
    let have = raise_nofile_limit().map_err(E2eError::Rlimit)?;
    let sockets = config.idle_tcp + config.silent_ws + config.saturating + config.flooders + 2;
    let need = sockets as u64 + FD_MARGIN;
    if have < need {
        return Err(E2eError::FileLimit { need, have });
    }
    let exe = std::env::current_exe().map_err(|e| E2eError::Relay(RelayProcessError::Spawn(e)))?;
    let mut relay = RelayProcess::start(&exe, config.shards)?;
    let _ = writeln!(progress, "perf hostile: started relay pid {}: {}", relay.pid(), relay.start_line);
    let result = measure(config, &relay, progress);
    let peak_rss = ProcSample::read(relay.pid()).map(|s| s.peak_rss_bytes);
    if !relay.stop() {
        let _ = writeln!(progress, "perf hostile: the relay did not exit cleanly after SIGTERM");
    }
    let (idle, attacked, counts) = result?;
    let mut report = HostileReport::new(&idle, &attacked, counts, peak_rss, config.rss_bound_bytes);
    report.seconds_per_phase = config.seconds;
    Ok(report)
}

/// The two runs of the pair around the attack.
fn measure(
    config: &HostileConfig,
    relay: &RelayProcess,
    progress: &mut dyn Write,
) -> Result<(crate::perf::report::Report, crate::perf::report::Report, crate::perf::hostile::AttackCounts), E2eError> {
    let pair = E2eConfig {
        relay: Some(relay.url.clone()),
        relay_pid: Some(relay.pid()),
        seconds: config.seconds,
        publishers: 1,
        subscribers: 1,
        subscribers_per_conn: 1,
        batch: 256,
        rate: None,
        shards: config.shards,
        threads: config.threads,
        inflight_batches: 8,
    };
    let _ = writeln!(progress, "perf hostile: the healthy pair on the idle relay");
    let idle = e2e::run(&pair, progress)?;
    let plan = AttackPlan {
        relay: resolve(&relay.url)?,
        sources: (0..config.sources.max(1)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i as u8))).collect(),
        idle_tcp: config.idle_tcp,
        silent_ws: config.silent_ws,
        saturating: config.saturating,
        flooders: config.flooders,
    };
    let attack = Attack::start(&plan);
    let started = Instant::now();
    loop {
        let c = attack.counts();
        let established = c.idle_open >= config.idle_tcp as u64 * 9 / 10
            && c.silent_ws_open >= config.silent_ws as u64 * 9 / 10
            && c.saturating_subscribes_sent >= config.saturating as u64
            && (config.flooders == 0 || c.flood_publishes > 0);
        if established || started.elapsed() > ESTABLISH_TIMEOUT {
            let _ = writeln!(
                progress,
                "perf hostile: attack {} after {:.1} s: {} idle TCP, {} silent WebSockets, {} saturating SUBSCRIBEs \
                 sent ({} refused), {} flood PUBLISHes",
                if established { "established" } else { "NOT fully established" },
                started.elapsed().as_secs_f64(),
                c.idle_open,
                c.silent_ws_open,
                c.saturating_subscribes_sent,
                c.saturating_refused,
                c.flood_publishes
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = writeln!(progress, "perf hostile: the healthy pair under attack");
    let attacked = e2e::run(&pair, progress);
    let counts = attack.stop();
    Ok((idle, attacked?, counts))
}
