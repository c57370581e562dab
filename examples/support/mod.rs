//! What the load examples (`ws_fanout`, `live_load`) share: reading a server process's resident
//! memory and asking a running server for its state. Included by each with `#[path]`; not an
//! example itself.

use anyhow::{anyhow, bail, Context, Result};
use marketsim::live::api_client::ApiClient;

/// `VmRSS` of a process, in KiB.
pub fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// `GET /api/simulation/state`, parsed.
pub async fn state_json(api: &ApiClient) -> Result<serde_json::Value> {
    let response = api.get("/api/simulation/state").await?;
    if !response.is_success() {
        bail!("GET /api/simulation/state answered {}", response.status);
    }
    response
        .json()
        .ok_or_else(|| anyhow!("GET /api/simulation/state: not JSON"))
}
