//! The host's only use of LibTorch (through `tch`): how many CUDA devices it
//! sees, and its intra-op thread count. The plugins run the models; the
//! daemon asks LibTorch nothing else, so everything else asks this module.

/// CUDA devices LibTorch can use (0 on a machine without CUDA).
pub fn cuda_device_count() -> usize {
    tch::Cuda::device_count().max(0) as usize
}

/// Sets how many threads LibTorch uses for one operation started from the
/// calling thread (OpenMP's count is per thread).
pub fn set_intra_op_threads(threads: usize) {
    tch::set_num_threads(threads.max(1) as i32);
}

/// LibTorch's intra-op thread count before any model set one of its own,
/// read once: call it at start-up, before models load. (A thread's count,
/// unless set on it, comes from the last one any thread set, so each
/// instance sets its own.)
pub fn default_intra_op_threads() -> usize {
    static DEFAULT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(intra_op_threads)
}

/// The intra-op thread count LibTorch has for the calling thread.
pub fn intra_op_threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intra_op_thread_count_reads_back_as_set() {
        // On a thread of its own: the count is per thread.
        let read = std::thread::spawn(|| {
            set_intra_op_threads(1);
            intra_op_threads()
        })
        .join()
        .unwrap();
        assert_eq!(read, 1);
    }
}
