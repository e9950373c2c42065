//! mirror::progress: what a mirror run tells about itself while it runs, through an [`Observer`] its caller passes in.
//!
//! As with [`crate::copy::progress`], the run never draws: `report::MirrorProgress` implements
//! [`Observer`] with bars on a terminal (or a plain line elsewhere), and [`Quiet`] tells no one.
//! [`ImageCopy`] turns the copy engine's per-destination calls for one image into per-target
//! byte counts, so a mirror's progress is in bytes, its total growing image by image.

use std::sync::Arc;

use super::ImageResult;
use crate::copy::fanout::OnBytes;
use crate::copy::progress::Observer as CopyObserver;

/// Watches a mirror run image by image. Every method does nothing unless implemented.
pub trait Observer: Send + Sync {
    /// `n` more images are to be done, at every target.
    fn add_images(&self, n: usize) {
        let _ = n;
    }

    /// `bytes` more are to be sent to `target` (a repository reference, `HOST/REPO…`): an
    /// image's copy has planned them.
    fn add_bytes(&self, target: &str, bytes: u64) {
        let _ = (target, bytes);
    }

    /// A callback counting bytes that reached `target` (streamed, or found present there).
    fn bytes_done(&self, target: &str) -> OnBytes {
        let _ = target;
        Arc::new(|_| {})
    }

    /// One image is done at every target, with these results.
    fn image_done(&self, result: &ImageResult) {
        let _ = result;
    }
}

/// Tells no one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// The copy of one image, watched for a mirror [`Observer`]: destination `i` is `targets[i]`.
pub(crate) struct ImageCopy<'a> {
    /// The run's observer.
    pub observer: &'a dyn Observer,
    /// The copy's destinations, in its order.
    pub targets: Vec<String>,
}

impl CopyObserver for ImageCopy<'_> {
    fn plan(&self, dest: usize, bytes: u64, _blobs: u64) {
        if let Some(t) = self.targets.get(dest) {
            self.observer.add_bytes(t, bytes);
        }
    }

    fn on_bytes(&self, dest: usize) -> OnBytes {
        match self.targets.get(dest) {
            Some(t) => self.observer.bytes_done(t),
            None => Arc::new(|_| {}),
        }
    }

    fn blob_done(&self, dest: usize, unstreamed_bytes: u64) {
        if let (Some(t), true) = (self.targets.get(dest), unstreamed_bytes > 0) {
            (self.observer.bytes_done(t))(unstreamed_bytes);
        }
    }
}
