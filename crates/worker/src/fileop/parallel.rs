//! Writing many files at once: creating small files is most of a copy's time.

use rayon::prelude::*;
use std::io;
use std::ops::Range;
use std::path::Path;

/// Items per thread below which a run stays on the calling thread, and the longest run of
/// items of one directory handed to one thread.
const GROUP: usize = 64;

/// Runs `f` on every item, on several threads when there are many, and gathers what it
/// returns, in the items' order. The first error stops the rest. Consecutive items with the
/// same `dir` go to one thread together: creating entries in one directory from two threads
/// at once only makes them wait on its lock.
///
/// The threads are a `rayon` pool made here, by the calling thread, rather than the global
/// pool: a file op's thread has a mount namespace of its own (see the module docs of
/// [`super`]), and only threads it starts itself are in that namespace and see its mounts.
pub(super) fn parallel<T: Sync, R: Send>(
    items: &[T],
    dir: impl Fn(&T) -> Option<&Path>,
    f: impl Fn(&T) -> io::Result<Option<R>> + Sync,
) -> io::Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(items.len() / GROUP + 1);
    // Runs of items in one directory, at most GROUP long (a big directory is still shared).
    let mut groups: Vec<Range<usize>> = Vec::new();
    for i in 0..items.len() {
        match groups.last_mut() {
            Some(g) if g.len() < GROUP && dir(&items[g.start]) == dir(&items[i]) => g.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    let run = |range: &Range<usize>| -> io::Result<Vec<R>> {
        let mut out = Vec::new();
        for item in &items[range.clone()] {
            // A panic is this copy's error, not the file op's.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)))
                .unwrap_or_else(|_| Err(io::Error::other("copy thread panicked")));
            out.extend(r?);
        }
        Ok(out)
    };
    let results: Vec<Vec<R>> = if threads <= 1 {
        groups.iter().map(run).collect::<io::Result<_>>()?
    } else {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kiln-copy-{i}"))
            .build()
            .map_err(io::Error::other)?
            .install(|| groups.par_iter().map(run).collect::<io::Result<_>>())?
    };
    Ok(results.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_dir(_: &u32) -> Option<&Path> {
        None
    }

    #[test]
    fn many_items_run_in_order_and_the_first_error_wins() {
        let items: Vec<u32> = (0..1000).collect();
        let out = parallel(&items, no_dir, |i| Ok(Some(*i))).unwrap();
        assert_eq!(out, items);
        let e = parallel(&items, no_dir, |i| {
            if *i == 500 {
                Err(io::Error::other("boom"))
            } else {
                Ok(None::<u32>)
            }
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "boom");
    }

    #[test]
    fn a_panic_is_an_error() {
        let items: Vec<u32> = (0..200).collect();
        let e = parallel(
            &items,
            |_| None,
            |i| -> io::Result<Option<u32>> {
                assert!(*i != 150, "boom");
                Ok(None)
            },
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "copy thread panicked");
    }
}
