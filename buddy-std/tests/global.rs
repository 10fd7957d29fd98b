//! `BuddyAlloc` as the `#[global_allocator]` of a program doing real std work on several
//! threads: collections, strings, sorting, channels, threads spawned and joined. Checks the
//! results, then the allocator's statistics.
//!
//! No test harness (`harness = false`): the harness's own threads and buffers would make the
//! allocator's figures depend on it. Each scenario runs in turn from `main`.

#[cfg(not(loom))]
mod global {
    use std::collections::{BTreeMap, HashMap, VecDeque};
    use std::sync::{Arc, Mutex, mpsc};

    use buddy_std::{BuddyAlloc, Config};

    /// Small chunks and two shards, so the run grows several chunks and uses both shards.
    #[global_allocator]
    static GLOBAL: BuddyAlloc =
        BuddyAlloc::with_config(Config::new().chunk_size(4 << 20).shards(2));

    fn collections_on_threads() {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut map = HashMap::new();
                    let mut tree = BTreeMap::new();
                    let mut queue = VecDeque::new();
                    for i in 0..20_000u64 {
                        let key = format!("t{t}-{i}");
                        map.insert(key.clone(), i);
                        tree.insert(i * 7 % 20_000, key);
                        queue.push_back(i);
                        if queue.len() > 100 {
                            queue.pop_front();
                        }
                    }
                    map.retain(|_, v| *v % 2 == 0);
                    (map.len(), tree.len(), queue.iter().sum::<u64>())
                })
            })
            .collect();
        for h in handles {
            let (map, tree, queue) = h.join().unwrap();
            assert_eq!(map, 10_000);
            assert_eq!(tree, 20_000);
            assert_eq!(queue, (19_900..20_000).sum());
        }
    }

    fn strings_and_sorting() {
        let mut words: Vec<String> = (0..50_000u32)
            .map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)))
            .collect();
        let mut copy = words.clone();
        words.sort();
        copy.sort_unstable_by(|a, b| b.cmp(a));
        copy.reverse();
        assert_eq!(words, copy);
        assert!(words.windows(2).all(|w| w[0] <= w[1]));
        let joined = words[..1000].join(",");
        assert_eq!(joined.split(',').count(), 1000);
        let big: String = words.concat();
        assert_eq!(big.len(), 8 * 50_000);
    }

    fn channels_between_threads() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let producers: Vec<_> = (0..3u8)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..2000usize {
                        tx.send(vec![t; 1 + i % 300]).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        // The consumer frees buffers that other threads allocated.
        let consumer = std::thread::spawn(move || {
            let mut bytes = 0usize;
            let mut sums = [0usize; 3];
            for v in rx {
                bytes += v.len();
                sums[v[0] as usize] += v.iter().map(|&b| b as usize).sum::<usize>();
            }
            (bytes, sums)
        });
        for p in producers {
            p.join().unwrap();
        }
        let (bytes, sums) = consumer.join().unwrap();
        let per_thread: usize = (0..2000usize).map(|i| 1 + i % 300).sum();
        assert_eq!(bytes, 3 * per_thread);
        assert_eq!(sums, [0, per_thread, 2 * per_thread]);
    }

    fn shared_state_and_large_buffers() {
        let shared = Arc::new(Mutex::new(Vec::new()));
        let handles: Vec<_> = (0..4usize)
            .map(|t| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    // Larger than a chunk: a mapping of its own.
                    let big = vec![t as u8; 6 << 20];
                    let sum: usize = big.iter().map(|&b| b as usize).sum();
                    shared.lock().unwrap().push(Box::new((t, sum)));
                    let mut grow = Vec::new();
                    for i in 0..100_000u32 {
                        grow.push(i); // realloc, in place when the buddy is free
                    }
                    grow.len()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 100_000);
        }
        let mut results = shared
            .lock()
            .unwrap()
            .iter()
            .map(|b| **b)
            .collect::<Vec<_>>();
        results.sort();
        let expected: Vec<_> = (0..4).map(|t| (t, t * (6 << 20))).collect();
        assert_eq!(results, expected);
    }

    /// A thread panics half-way through its work while others allocate: the panic machinery
    /// allocates its payload here, the unwinding frees what the thread owned, and the other
    /// threads never notice. (The counts checked by `main` prove nothing was left behind.)
    fn a_thread_panicking_among_allocating_ones() {
        // Silent panics: the default hook would capture a backtrace (`RUST_BACKTRACE`), whose
        // symbol cache std keeps for the life of the process. Both hooks are allocation-free.
        std::panic::set_hook(Box::new(|_| {}));
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut owned: Vec<String> = Vec::new();
                    for i in 0..5_000u64 {
                        owned.push(format!("{t}:{i}"));
                        if owned.len() > 100 {
                            owned.remove(0);
                        }
                        if t % 2 == 1 && i == 2_500 {
                            panic!("thread {t} gives up with {} strings", owned.len());
                        }
                    }
                    owned.len()
                })
            })
            .collect();
        let outcomes: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|e| e.downcast::<String>().map(|s| s.len()))
            })
            .collect();
        let _ = std::panic::take_hook();
        assert!(matches!(outcomes[0], Ok(100)));
        assert!(matches!(outcomes[1], Err(Ok(_))), "a String payload");
        assert!(matches!(outcomes[2], Ok(100)));
        assert!(matches!(outcomes[3], Err(Ok(_))));
        // The allocator still serves every thread.
        let sums: Vec<u64> = (0..4u64)
            .map(|t| std::thread::spawn(move || (0..1000).map(|i| i * t).sum()))
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(sums, [0, 499_500, 999_000, 1_498_500]);
    }

    /// Set in the child that `a_double_free_aborts_with_a_message` starts.
    const DOUBLE_FREE: &str = "BUDDY_GLOBAL_TEST_DOUBLE_FREE";

    /// The child: frees a block twice through the global allocator (undefined behaviour that
    /// a debug build of buddy-std checks for) and should not get past it.
    fn double_free() -> ! {
        use std::alloc::{GlobalAlloc, Layout};
        let l = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a valid layout; the second `dealloc` is the misuse under test, which the
        // allocator must refuse before it touches anything.
        unsafe {
            let p = GLOBAL.alloc(l);
            assert!(!p.is_null());
            GLOBAL.dealloc(p, l);
            GLOBAL.dealloc(p, l);
        }
        println!("the double free went unnoticed");
        std::process::exit(0)
    }

    /// A debug build aborts on a double free through the global allocator with one line on
    /// stderr. A panic there would allocate from this allocator in the middle of a `dealloc`;
    /// before the check, a block freed twice went into the deferred cache twice, unnoticed.
    #[cfg(debug_assertions)]
    fn a_double_free_aborts_with_a_message() {
        use std::os::unix::process::ExitStatusExt;
        use std::time::{Duration, Instant};
        let exe = std::env::current_exe().unwrap();
        let mut child = std::process::Command::new(exe)
            .env(DOUBLE_FREE, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("the child hangs after a double free");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(6),
            "SIGABRT expected: {:?}, stdout {:?}, stderr {stderr:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            stderr.starts_with("buddy: dealloc(0x") && stderr.contains("double free"),
            "{stderr:?}"
        );
    }

    pub fn main() {
        if std::env::var_os(DOUBLE_FREE).is_some() {
            double_free();
        }
        #[cfg(debug_assertions)]
        a_double_free_aborts_with_a_message();
        // Warm up what std sets up once (stdout, thread bookkeeping), then take the baseline.
        println!("global allocator: BuddyAlloc");
        std::thread::spawn(|| ()).join().unwrap();
        let before = GLOBAL.stats();

        collections_on_threads();
        strings_and_sorting();
        channels_between_threads();
        shared_state_and_large_buffers();
        a_thread_panicking_among_allocating_ones();

        let after = GLOBAL.stats();
        println!("{after}");
        let allocations = after.heap.allocations - before.heap.allocations;
        let frees = after.heap.frees - before.heap.frees;
        assert!(
            allocations > 200_000,
            "only {allocations} allocations counted"
        );
        // Everything the scenarios made is gone again (std keeps nothing of theirs).
        assert_eq!(
            after.live_allocations(),
            before.live_allocations(),
            "live allocations before {} and after {}",
            before.live_allocations(),
            after.live_allocations()
        );
        assert_eq!(allocations, frees);
        assert_eq!(after.allocated_bytes(), before.allocated_bytes());
        assert_eq!(after.os.direct_allocations, 0);
        assert!(after.os.chunks >= 2, "two shards grow at least two chunks");
        assert!(
            after.os.purges > 0,
            "the 6 MiB buffers were purged when freed"
        );
        assert_eq!(after.heap.failed_requests, 0);
        GLOBAL.check().expect("heap structure intact");
        println!("global: 1 passed, 0 failed");
    }
}

fn main() {
    #[cfg(not(loom))]
    global::main();
}
