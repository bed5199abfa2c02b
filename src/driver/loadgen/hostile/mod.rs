//! `tessera perf hostile`: does a healthy publisher/subscriber pair keep its throughput and latency while hostile
//! clients load the relay? (docs/PERFORMANCE.md §Hostile load)
//!
//! ```text
//! raise RLIMIT_NOFILE ─▶ for each of `rounds` rounds:
//!   start a relay child (--shards S)
//!   ─▶ the healthy side (1 publisher connection, `--subscribers` subscriber connections, 64 by default):
//!      W-e2e at a fixed rate (publish→deliver latency), then W-e2e saturated (throughput) ─▶ idle figures
//!   ─▶ stop it; start a fresh relay; its RSS now; reset its peak (clear_refs)
//!   ─▶ Attack::start: idle TCP, silent WebSockets, saturating subscribers, reply flooders (attackers.rs)
//!   ─▶ wait until the attack is established ─▶ the same two runs again ─▶ attacked figures
//!   ─▶ relay peak RSS under attack ─▶ Attack::stop ─▶ SIGTERM ─▶ Round (perf::hostile: this round's ratios)
//! ─▶ HostileReport (median ratios over the rounds, targets)
//! ```
//! Latency is compared at one fixed rate well below saturation, and first on a fresh relay, so it measures how
//! long the relay takes to route a proof — not the saturated run's queue, nor late matches of proofs an earlier
//! run published to the same (repeating) subscriber ids. With a single subscriber the load generator's commit
//! book runs dry and rotates several times a second, so the healthy side has 64 subscribers by default.
//! The pair connects from 127.0.0.1, the attackers from other loopback addresses (127.0.1.x), so limits per
//! source address apply to the attackers and never to the pair.

mod attackers;
pub mod raw_ws;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::e2e::{self, E2eConfig, E2eError};
use super::process::{raise_nofile_limit, reset_peak_rss, rss_bytes, ProcSample, RelayProcess, RelayProcessError};
use crate::driver::client::conn::resolve;
use crate::perf::hostile::{AttackCounts, HostileReport, Round, Rss, Runs};
use crate::perf::report::Report;
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
    /// Subscribers of the healthy side, one connection each (their publisher is one connection).
    pub subscribers: usize,
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
    /// What the attack may add to the relay's peak RSS, bytes: the bound is the highest idle peak of the rounds
    /// (the same healthy runs without an attack; `HostileReport::new`) plus this.
    pub rss_margin_bytes: u64,
    /// Fixed rate of the latency runs, proofs/s.
    pub latency_rate: u64,
    /// Rounds of (idle, attacked) pairs; the targets judge the median of their ratios.
    pub rounds: usize,
    /// Nice value of the attacker threads (see `attackers::set_thread_nice`).
    pub attackers_nice: i32,
}

/// Runs the benchmark; progress goes to `progress`.
pub fn run(config: &HostileConfig, progress: &mut dyn Write) -> Result<HostileReport, E2eError> {
    let have = raise_nofile_limit().map_err(E2eError::Rlimit)?;
    let sockets = config.idle_tcp + config.silent_ws + config.saturating + config.flooders + config.subscribers + 1;
    let need = sockets as u64 + FD_MARGIN;
    if have < need {
        return Err(E2eError::FileLimit { need, have });
    }
    let mut rounds = Vec::with_capacity(config.rounds);
    for number in 1..=config.rounds {
        let r = round(config, number, progress)?;
        let p99 = r.p99_ratio.map_or("-".into(), |v| format!("{v:.2}x"));
        let (of, throughput) = (config.rounds, r.throughput_ratio * 100.0);
        let _ =
            writeln!(progress, "perf hostile: round {number} of {of}: throughput {throughput:.1}% of idle, p99 {p99}");
        rounds.push(r);
    }
    let mut report = HostileReport::new(rounds, config.rss_margin_bytes);
    report.seconds_per_phase = config.seconds;
    report.attackers_nice = config.attackers_nice;
    Ok(report)
}

/// One round: the pair on a fresh idle relay, then on another fresh relay under attack.
fn round(config: &HostileConfig, number: usize, progress: &mut dyn Write) -> Result<Round, E2eError> {
    let _ = writeln!(progress, "perf hostile: round {number}: the healthy side on an idle relay");
    let idle = with_relay(config, progress, |relay, progress| {
        let runs = pair_runs(config, relay, progress)?;
        Ok((runs, ProcSample::read(relay.pid()).map(|s| s.peak_rss_bytes)))
    })?;
    let (idle, idle_peak_bytes) = idle;
    let _ = writeln!(progress, "perf hostile: round {number}: the healthy side on a fresh relay under attack");
    let (attacked, counts, mut rss) =
        with_relay(config, progress, |relay, progress| attacked(config, relay, progress))?;
    rss.idle_peak_bytes = idle_peak_bytes;
    Ok(Round::new(
        Runs { saturate: &idle.1, fixed: &idle.0 },
        Runs { saturate: &attacked.1, fixed: &attacked.0 },
        counts,
        rss,
    ))
}

/// Runs `f` against a relay of our own, started fresh (so no run sees the proofs, subscriptions or late
/// matches of another: the load generator's subscriber ids repeat between runs) and stopped afterwards.
fn with_relay<T>(
    config: &HostileConfig,
    progress: &mut dyn Write,
    f: impl FnOnce(&RelayProcess, &mut dyn Write) -> Result<T, E2eError>,
) -> Result<T, E2eError> {
    let exe = std::env::current_exe().map_err(|e| E2eError::Relay(RelayProcessError::Spawn(e)))?;
    let mut relay = RelayProcess::start(&exe, config.shards, false)?;
    let _ = writeln!(progress, "perf hostile: started relay pid {}: {}", relay.pid(), relay.start_line);
    let result = f(&relay, progress);
    if !relay.stop() {
        let _ = writeln!(progress, "perf hostile: the relay did not exit cleanly after SIGTERM");
    }
    result
}

/// The healthy side's two runs: first at the fixed rate (latency), then saturated (throughput).
fn pair_runs(
    config: &HostileConfig,
    relay: &RelayProcess,
    progress: &mut dyn Write,
) -> Result<(Report, Report), E2eError> {
    let saturate = E2eConfig {
        relay: Some(relay.url.clone()),
        relay_pid: Some(relay.pid()),
        seconds: config.seconds,
        publishers: 1,
        subscribers: config.subscribers,
        subscribers_per_conn: 1,
        batch: 256,
        rate: None,
        shards: config.shards,
        threads: config.threads,
        inflight_batches: 8,
        tls: false,
        tls_ca: None,
    };
    let fixed = E2eConfig { rate: Some(config.latency_rate), ..saturate.clone() };
    Ok((e2e::run(&fixed, progress)?, e2e::run(&saturate, progress)?))
}

/// The attack, established first, then the healthy side's runs while it goes on.
fn attacked(
    config: &HostileConfig,
    relay: &RelayProcess,
    progress: &mut dyn Write,
) -> Result<((Report, Report), AttackCounts, Rss), E2eError> {
    let before_attack_bytes = rss_bytes(relay.pid());
    // Peak from here on: the attack and the healthy runs beside it (start-up excluded).
    let peak_reset = reset_peak_rss(relay.pid()).is_ok();
    let plan = AttackPlan {
        relay: resolve(&relay.url)?,
        sources: (0..config.sources.max(1)).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i as u8))).collect(),
        idle_tcp: config.idle_tcp,
        silent_ws: config.silent_ws,
        saturating: config.saturating,
        flooders: config.flooders,
        nice: config.attackers_nice,
    };
    let attack = Attack::start(&plan);
    wait_established(config, &attack, progress);
    let runs = pair_runs(config, relay, progress);
    let peak_under_attack_bytes = ProcSample::read(relay.pid()).map(|s| s.peak_rss_bytes).filter(|_| peak_reset);
    let counts = attack.stop();
    let rss = Rss { idle_peak_bytes: None, before_attack_bytes, peak_under_attack_bytes, bound_bytes: 0 };
    Ok((runs?, counts, rss))
}

/// Waits until every attacker has reached (about) its full size, or `ESTABLISH_TIMEOUT`.
fn wait_established(config: &HostileConfig, attack: &Attack, progress: &mut dyn Write) {
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
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
