/// This process's cgroup in the cgroup2 hierarchy, when one is mounted (from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`). Shared by `build.rs` and the cgroup v2
/// tests through `include!`.
fn own_v2_cgroup() -> Option<std::path::PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let (root, point) = mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if !post.starts_with("cgroup2 ") {
            return None;
        }
        let f: Vec<&str> = pre.split(' ').collect();
        Some((f.get(3)?.to_string(), std::path::PathBuf::from(f.get(4)?)))
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let rel = path
        .strip_prefix(root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    Some(point.join(rel))
}
