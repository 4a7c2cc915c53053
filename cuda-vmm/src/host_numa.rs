//! Host NUMA nodes: which ids [`Location::HostNuma`](crate::Location::HostNuma) may name.

use crate::device::Device;
use crate::error::{Error, Result};

/// Where Linux lists the online NUMA nodes (`0-3,5`); absent on kernels without NUMA.
const ONLINE_NODES: &str = "/sys/devices/system/node/online";

/// Parses a kernel node list (`0`, `0-3,5`, with a trailing newline); `None` if malformed.
pub(crate) fn parse_node_list(text: &str) -> Option<Vec<u32>> {
    let mut nodes = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if lo > hi {
            return None;
        }
        nodes.extend(lo..=hi);
    }
    Some(nodes)
}

/// The host's online NUMA nodes: the kernel's list, or node 0 alone when the kernel has
/// none (no NUMA: the driver then takes id 0), or `None` when the list cannot be read.
fn online_nodes() -> Option<Vec<u32>> {
    match std::fs::read_to_string(ONLINE_NODES) {
        Ok(text) => parse_node_list(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(vec![0]),
        Err(_) => None,
    }
}

/// Checks, before `cuMemCreate`, that host NUMA memory on `node` can be created through
/// `device`: the device reports `HOST_NUMA_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED`, and
/// `node` is the device's own host NUMA node or one the host lists online.
pub(crate) fn check_node(device: &Device, node: u32) -> Result<()> {
    if !device.supports_host_numa_vmm()? {
        return Err(Error::Unsupported {
            feature: "host NUMA memory with VMM",
            device: device.ordinal(),
        });
    }
    if device.host_numa_id()? == Some(node) {
        return Ok(());
    }
    match online_nodes() {
        Some(online) if !online.contains(&node) => Err(Error::invalid(format!(
            "location HostNuma({node}): host NUMA node {node} is not online (online nodes: \
             {online:?}; device {} is nearest to node {:?})",
            device.ordinal(),
            device.host_numa_id()?
        ))),
        // Unknown (unreadable list): the driver decides.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_node_list;

    #[test]
    fn node_lists_parse() {
        assert_eq!(parse_node_list("0\n"), Some(vec![0]));
        assert_eq!(parse_node_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_node_list(""), Some(vec![]));
        assert_eq!(parse_node_list("3-1"), None);
        assert_eq!(parse_node_list("x"), None);
    }
}
