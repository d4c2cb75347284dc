//! One load round with `oha`: a fixed number of connections for a fixed time,
//! read back from its JSON summary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;

/// What one `oha` round measured. Latencies in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Round {
    /// Successful (2xx) requests per second.
    pub(crate) rps: f64,
    /// Median latency (whole response).
    pub p50: f64,
    /// 99th percentile latency.
    pub p99: f64,
    /// Slowest request.
    pub(crate) max: f64,
    /// Median time to the first byte of the response, as oha sees it.
    pub first_byte_p50: f64,
    /// Requests that failed or answered something else than 2xx.
    pub(crate) errors: u64,
    /// Requests answered 2xx.
    pub(crate) ok: u64,
    /// CPU time of the measured process during the round, when one was named.
    pub(crate) cpu: Option<Duration>,
    /// Wall time of the round, seconds.
    pub(crate) seconds: f64,
}

/// A load round's target and shape.
pub(crate) struct Load<'a> {
    /// The URL.
    pub(crate) url: &'a str,
    /// The request body file.
    pub(crate) body: &'a Path,
    /// Connections.
    pub(crate) concurrency: usize,
    /// How long.
    pub(crate) duration: Duration,
    /// Extra request headers.
    pub(crate) headers: &'a [&'a str],
}

/// Runs `oha` once; `pid` is the process whose CPU time is counted.
pub(crate) fn run(
    oha: &Path,
    scratch: &Path,
    load: &Load<'_>,
    pid: Option<u32>,
) -> Result<Round, String> {
    let output = scratch.join("oha.json");
    let mut command = Command::new(oha);
    command
        .args(["--no-tui", "--no-color", "-w", "-m", "POST"])
        .args(["-T", "application/json"])
        .arg("-c")
        .arg(load.concurrency.to_string())
        .arg("-z")
        .arg(format!("{}ms", load.duration.as_millis()))
        .arg("-t")
        .arg("30s")
        .arg("-D")
        .arg(load.body)
        .args(["--output-format", "json", "-o"])
        .arg(&output);
    for header in load.headers {
        command.arg("-H").arg(header);
    }
    command.arg(load.url);
    let cpu_before = pid.and_then(crate::procs::cpu_time);
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", oha.display()))?;
    let cpu_after = pid.and_then(crate::procs::cpu_time);
    if !status.status.success() {
        return Err(format!(
            "oha failed ({}): {}",
            status.status,
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let text = std::fs::read_to_string(&output)
        .map_err(|error| format!("oha wrote no {}: {error}", output.display()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|error| format!("oha's output is not JSON: {error}"))?;
    let mut round = parse(&json)?;
    round.cpu = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after.saturating_sub(before));
    Ok(round)
}

fn parse(json: &Value) -> Result<Round, String> {
    let number = |pointer: &str| json.pointer(pointer).and_then(Value::as_f64);
    let seconds = number("/summary/total").ok_or("oha's output has no summary.total")?;
    let mut ok = 0;
    let mut errors = 0;
    if let Some(statuses) = json
        .get("statusCodeDistribution")
        .and_then(Value::as_object)
    {
        for (status, count) in statuses {
            let count = count.as_u64().unwrap_or(0);
            if status.starts_with('2') {
                ok += count;
            } else {
                errors += count;
            }
        }
    }
    if let Some(failures) = json.get("errorDistribution").and_then(Value::as_object) {
        errors += failures.values().filter_map(Value::as_u64).sum::<u64>();
    }
    let ms = |pointer: &str| number(pointer).unwrap_or(f64::NAN) * 1e3;
    Ok(Round {
        rps: ok as f64 / seconds.max(1e-9),
        p50: ms("/latencyPercentiles/p50"),
        p99: ms("/latencyPercentiles/p99"),
        max: ms("/summary/slowest"),
        first_byte_p50: ms("/firstBytePercentiles/p50"),
        errors,
        ok,
        cpu: None,
        seconds,
    })
}

/// `oha` under the target folder, where `scripts/bench` installs it.
pub(crate) fn oha_path(target: &Path) -> PathBuf {
    target.join("tools").join("bin").join("oha")
}

/// Rounds of one setting put together: RPS and CPU from the totals, latency
/// percentiles as the median of the rounds' (a round's percentile is exact;
/// two rounds' cannot be merged without their samples), max as the maximum.
pub(crate) fn combine(rounds: &[Round]) -> Round {
    let median = |pick: fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).filter(|v| v.is_finite()).collect();
        crate::median(&mut values)
    };
    let seconds: f64 = rounds.iter().map(|r| r.seconds).sum();
    let ok: u64 = rounds.iter().map(|r| r.ok).sum();
    Round {
        rps: ok as f64 / seconds.max(1e-9),
        p50: median(|r| r.p50),
        p99: median(|r| r.p99),
        max: rounds.iter().map(|r| r.max).fold(0.0, f64::max),
        first_byte_p50: median(|r| r.first_byte_p50),
        errors: rounds.iter().map(|r| r.errors).sum(),
        ok,
        cpu: rounds.iter().map(|r| r.cpu).sum(),
        seconds,
    }
}

impl Round {
    /// CPU time of the measured process per successful request, microseconds.
    pub(crate) fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.ok > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ok as f64)
    }
}
