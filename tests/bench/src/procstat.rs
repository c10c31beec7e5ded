//! CPU time and resident memory of server processes, from `/proc`.

use std::io;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on, used if `getconf` is missing).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User plus system CPU time of `pid` (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; fields after it are fixed.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) sit at 11, 12.
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("malformed /proc stat"))
    };
    Ok(tick(11)? + tick(12)?)
}

/// Summed CPU ticks of several processes.
pub fn cpu_ticks_all(pids: &[u32]) -> io::Result<u64> {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

/// Resident set size of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    status_kb(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident set size of `pid` so far, in bytes.
pub fn peak_rss_bytes(pid: u32) -> io::Result<u64> {
    status_kb(pid, "VmHWM:").map(|kb| kb * 1024)
}

/// A field in kB of `/proc/<pid>/status`.
fn status_kb(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc status")))
}

/// The 1-minute load average, for the record.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).expect("rss") > 0);
        assert!(peak_rss_bytes(me).expect("peak") >= rss_bytes(me).expect("rss") / 2);
        cpu_ticks(me).expect("cpu");
        assert!(ticks_per_second() > 0);
    }
}
