//! The process's allocator, set once at start.
//!
//! glibc's `malloc` gives each thread that meets contention an arena of its own, up to eight per
//! core, and raises its `mmap` threshold each time a large block is freed, so that later large
//! blocks (a page of contacts, a commit's statement) come from an arena instead of being mapped
//! and given back. leadsync's threads (tokio's workers, `spawn_blocking`'s, SQLite's worker)
//! allocate a block's contacts on one thread and free them on another, so every arena keeps its
//! own high-water mark and the process's resident memory stays well above what the heap holds.
//! [`tune`] caps the arenas and fixes the threshold; `main` calls it before the runtime starts,
//! and the benchmarks' leadsync child does the same (README, Figures: the peak memory row).

/// Arenas kept at most: one for the main thread, one shared by every other.
pub const ARENAS: i32 = 2;

/// Blocks of this size and more are mapped on their own and given back when freed (glibc's
/// starting value, kept instead of raised).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// What [`tune`] did with one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Set to leadsync's value.
    Set,
    /// Set in the environment (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or
    /// `GLIBC_TUNABLES`): the operator's choice, left as it is.
    LeftToEnvironment,
    /// Not glibc: its allocator has no such setting.
    NotGlibc,
}

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuned {
    /// The arena cap ([`ARENAS`]).
    pub arenas: Setting,
    /// The fixed `mmap` threshold ([`MMAP_THRESHOLD`]).
    pub mmap_threshold: Setting,
}

/// Caps glibc's arenas at [`ARENAS`] and fixes its `mmap` threshold at [`MMAP_THRESHOLD`], each
/// unless the environment chose already. Call it first thing in `main`: threads that allocated
/// before keep the arena they have.
pub fn tune() -> Tuned {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let chosen = |var: &str, tunable: &str| std::env::var_os(var).is_some() || tunables.contains(tunable);
    Tuned {
        arenas: if chosen("MALLOC_ARENA_MAX", "arena_max") {
            Setting::LeftToEnvironment
        } else {
            set(M_ARENA_MAX, ARENAS)
        },
        mmap_threshold: if chosen("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") {
            Setting::LeftToEnvironment
        } else {
            set(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        },
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use libc::{M_ARENA_MAX, M_MMAP_THRESHOLD};
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_ARENA_MAX: i32 = 0;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const M_MMAP_THRESHOLD: i32 = 0;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(param: i32, value: i32) -> Setting {
    // SAFETY: mallopt only sets a parameter of glibc's allocator; both parameters take any
    // positive value (the threshold up to 32 MiB).
    let done = unsafe { libc::mallopt(param, value) };
    if done == 1 { Setting::Set } else { Setting::NotGlibc }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_param: i32, _value: i32) -> Setting {
    Setting::NotGlibc
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Marks this test binary's run as the child of [`threads_allocating_at_once_share_the_capped_arenas`].
    const CHILD: &str = "LEADSYNC_TEST_ARENAS_CHILD";

    /// Arenas glibc's malloc has, by `malloc_info`'s XML (one `<heap nr=…>` per arena).
    fn arenas_in_use() -> usize {
        let mut buf: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream allocates the buffer it reports; malloc_info writes into the
        // stream; the buffer is read after fclose and freed once.
        unsafe {
            let stream = libc::open_memstream(&mut buf, &mut len);
            assert!(!stream.is_null(), "open_memstream");
            assert_eq!(libc::malloc_info(0, stream), 0, "malloc_info");
            libc::fclose(stream);
            let xml = std::slice::from_raw_parts(buf as *const u8, len);
            let count = String::from_utf8_lossy(xml).matches("<heap nr=").count();
            libc::free(buf.cast());
            count
        }
    }

    /// Eight threads allocating and freeing at the same moment, many times over.
    fn contend() {
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    start.wait();
                    for round in 0..20_000 {
                        let v: Vec<u8> = vec![round as u8; 64 + round % 512];
                        std::hint::black_box(&v);
                    }
                });
            }
        });
    }

    /// Whether a large block, allocated again after one of its size was freed, is mapped on its
    /// own: glibc's raised threshold would take it from an arena instead.
    fn large_block_mapped() -> bool {
        const SIZE: usize = 1 << 20;
        drop(std::hint::black_box(vec![1u8; SIZE]));
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let before = unsafe { libc::mallinfo2() }.hblkhd;
        let again = std::hint::black_box(vec![2u8; SIZE]);
        let after = unsafe { libc::mallinfo2() }.hblkhd;
        drop(again);
        after >= before + SIZE
    }

    /// The child: calls `tune` when told, contends, prints what it did, the arenas and whether
    /// a large block was mapped.
    #[test]
    fn tune_child() {
        let Ok(mode) = std::env::var(CHILD) else { return };
        let did = if mode == "1" {
            format!("{:?}", tune())
        } else {
            "nothing".into()
        };
        contend();
        println!("did={did}|arenas={}|mapped={}|", arenas_in_use(), large_block_mapped());
    }

    /// What the child saw, `env` set in its environment.
    struct Child {
        did: String,
        arenas: usize,
        mapped: bool,
    }

    fn child(tuned: bool, env: &[(&str, &str)]) -> Child {
        let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "--exact",
            "memory::tests::tune_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, if tuned { "1" } else { "0" });
        for var in ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("child test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {text}");
        // libtest may print its own "test … ... " before the line on the same row.
        let line = text.split("did=").nth(1).expect("the child's line");
        let mut fields = line.split('|');
        let mut field = |name: &str| {
            let f = fields.next().unwrap_or_default();
            f.strip_prefix(name).unwrap_or(f).to_string()
        };
        Child {
            did: field(""),
            arenas: field("arenas=").parse().expect("arenas"),
            mapped: field("mapped=") == "true",
        }
    }

    const TUNED: &str = "Tuned { arenas: Set, mmap_threshold: Set }";

    #[test]
    fn threads_allocating_at_once_share_the_capped_arenas() {
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        let tuned = child(true, &[]);
        assert_eq!(tuned.did, TUNED);
        assert!(
            tuned.arenas <= ARENAS as usize,
            "{} arenas with the cap at {ARENAS}",
            tuned.arenas
        );
        // Without the cap the same threads make arenas of their own: what the cap prevents.
        let free = child(false, &[]);
        assert!(
            free.arenas > ARENAS as usize,
            "{} arenas without the cap: the test shows nothing",
            free.arenas
        );
    }

    #[test]
    fn a_large_block_freed_and_allocated_again_is_mapped_and_given_back() {
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        assert!(
            child(true, &[]).mapped,
            "the threshold fixed: a large block is mapped on its own"
        );
        // glibc's default raises the threshold past the freed block: the next comes from an arena.
        assert!(
            !child(false, &[]).mapped,
            "without the fixed threshold: the test shows nothing"
        );
    }

    #[test]
    fn settings_made_in_the_environment_are_left_as_they_are() {
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        let chosen = child(
            true,
            &[("MALLOC_ARENA_MAX", "6"), ("MALLOC_MMAP_THRESHOLD_", "4194304")],
        );
        assert_eq!(
            chosen.did,
            "Tuned { arenas: LeftToEnvironment, mmap_threshold: LeftToEnvironment }"
        );
        assert!(
            chosen.arenas > ARENAS as usize && chosen.arenas <= 6,
            "{} arenas with MALLOC_ARENA_MAX=6",
            chosen.arenas
        );
        // A 1 MiB block under the operator's 4 MiB threshold comes from an arena.
        assert!(!chosen.mapped);
        let tunable = child(true, &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=3")]);
        assert_eq!(tunable.did, "Tuned { arenas: LeftToEnvironment, mmap_threshold: Set }");
    }
}
