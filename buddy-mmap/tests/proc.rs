//! What the kernel sees, read from `/proc/self/smaps`: touched pages are resident, purged pages
//! are not, dropped regions are unmapped, and aligned reservations leave no excess mapped.
#![cfg(not(miri))]

use buddy_mmap::{Region, page_size};

/// One mapping of `/proc/self/smaps`: start, end, resident bytes.
#[derive(Debug)]
struct Mapping {
    start: usize,
    end: usize,
    rss: usize,
}

fn mappings() -> Vec<Mapping> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        let range = first.split_once('-').and_then(|(start, end)| {
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        });
        if let Some((start, end)) = range {
            out.push(Mapping { start, end, rss: 0 });
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: usize = kib.trim().trim_end_matches("kB").trim().parse().unwrap();
            out.last_mut().unwrap().rss = kib * 1024;
        }
    }
    out
}

/// The mappings overlapping `start..end`.
fn overlapping(start: usize, end: usize) -> Vec<Mapping> {
    mappings()
        .into_iter()
        .filter(|m| m.start < end && start < m.end)
        .collect()
}

/// Resident bytes of the mappings that overlap the region (the kernel may merge neighbours).
fn resident(region: &Region) -> usize {
    let start = region.as_ptr() as usize;
    overlapping(start, start + region.len())
        .iter()
        .map(|m| m.rss)
        .sum()
}

#[test]
fn touched_pages_become_resident_and_purge_returns_them_to_the_os() {
    let len = 64 << 20;
    let region = Region::reserve(len).unwrap();
    let before = resident(&region);
    assert!(
        before < 4 << 20,
        "untouched reservation is resident: {before}"
    );

    // SAFETY: in bounds; only this test uses the region.
    unsafe { region.as_ptr().write_bytes(0x77, len) };
    let touched = resident(&region);
    assert!(touched >= before + len - (1 << 20), "touched {touched}");

    // SAFETY: nothing relies on the contents; no reference into the region is live.
    unsafe { region.purge(0, len) }.unwrap();
    let purged = resident(&region);
    assert!(
        purged + len - (1 << 20) <= touched,
        "purged {purged}, touched {touched}"
    );
    // SAFETY: nothing writes the region meanwhile.
    let data = unsafe { core::slice::from_raw_parts(region.as_ptr(), len) };
    assert!(data.iter().all(|&b| b == 0));
}

#[test]
fn drop_unmaps_the_region() {
    let region = Region::reserve(3 * page_size()).unwrap();
    let (start, end) = (
        region.as_ptr() as usize,
        region.as_ptr() as usize + region.len(),
    );
    assert!(
        overlapping(start, end)
            .iter()
            .any(|m| m.start <= start && end <= m.end)
    );
    drop(region);
    // Another thread could map the same range in between; this binary's other tests map
    // nothing of this size, so a mapping still covering exactly this range means a leak.
    assert!(
        !overlapping(start, end)
            .iter()
            .any(|m| m.start == start && m.end == end),
        "still mapped"
    );
}

#[test]
fn reserve_aligned_keeps_no_excess_address_space_mapped() {
    let (len, align) = (1 << 20, 1 << 28);
    let region = Region::reserve_aligned(len, align).unwrap();
    let start = region.as_ptr() as usize;
    // Nothing else is mapped within `align` of the region on either side that came from the
    // over-reservation: the head and tail were unmapped.
    let around = overlapping(
        start.saturating_sub(align),
        (start + len).saturating_add(align),
    );
    let ours = around
        .iter()
        .find(|m| m.start <= start && start + len <= m.end)
        .expect("region is mapped");
    assert!(ours.end - ours.start < len + align / 2, "{ours:?}");
}
