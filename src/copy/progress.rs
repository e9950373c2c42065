//! copy::progress: what a copy tells about itself while it runs, through an [`Observer`] its caller passes in.
//!
//! The engine never draws. A front end implements [`Observer`] (ferry's terminal bars are
//! `report::Progress`) and everything else passes [`Quiet`]; so the copy engine, and promote and
//! mirror above it, stay below `report`, the way cargo and nextest keep drawing out of their cores.

use std::sync::Arc;

use super::fanout::OnBytes;
use crate::outcome::Outcome;

/// Watches one copy from a source to a list of destinations, each named by its index in that
/// list. The engine calls it from the copy's concurrent tasks, hence `Send + Sync`; every
/// method does nothing unless implemented.
pub trait Observer: Send + Sync {
    /// Destination `dest` has `bytes` to receive, in `blobs` blobs.
    fn plan(&self, dest: usize, bytes: u64, blobs: u64) {
        let _ = (dest, bytes, blobs);
    }

    /// A callback counting bytes as they stream to destination `dest`; the fan-out calls it
    /// for every chunk, so it should be cheap.
    fn on_bytes(&self, dest: usize) -> OnBytes {
        let _ = dest;
        Arc::new(|_| {})
    }

    /// A blob is done at destination `dest`; `unstreamed_bytes` are the bytes it did not
    /// stream there (found present or mounted), so that a byte count still reaches the plan.
    fn blob_done(&self, dest: usize, unstreamed_bytes: u64) {
        let _ = (dest, unstreamed_bytes);
    }

    /// Destination `dest` is finished, with `outcome`.
    fn finish(&self, dest: usize, outcome: Outcome) {
        let _ = (dest, outcome);
    }
}

/// Tells no one: for the copies nobody watches (attached artifacts, mirror's images, tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {}

/// Passes a copy to some destinations on to an observer of a longer list: destination `i` of
/// the copy is `index[i]` of the observer's (one image's targets among a release's, or the
/// targets still to check among all).
pub struct Remap<'a, P: Observer + ?Sized> {
    inner: &'a P,
    index: Vec<usize>,
}

impl<'a, P: Observer + ?Sized> Remap<'a, P> {
    /// Destination `i` of the copy reports as `index[i]` to `inner`.
    pub fn new(inner: &'a P, index: Vec<usize>) -> Self {
        Remap { inner, index }
    }
}

impl<P: Observer + ?Sized> Observer for Remap<'_, P> {
    fn plan(&self, dest: usize, bytes: u64, blobs: u64) {
        self.inner.plan(self.index[dest], bytes, blobs)
    }
    fn on_bytes(&self, dest: usize) -> OnBytes {
        self.inner.on_bytes(self.index[dest])
    }
    fn blob_done(&self, dest: usize, unstreamed_bytes: u64) {
        self.inner.blob_done(self.index[dest], unstreamed_bytes)
    }
    fn finish(&self, dest: usize, outcome: Outcome) {
        self.inner.finish(self.index[dest], outcome)
    }
}
