//! Bounds on what a peer may make us buffer or allocate.

/// Parser bounds. Declared lengths are checked against these before anything is buffered
/// for them, and nothing is ever allocated from a declared length: buffers grow only with the
/// bytes that actually arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (`$<n>`) accepted. Redis: `proto-max-bulk-len`, 512 MiB.
    pub max_bulk_len: usize,
    /// Most elements in one request array (`*<n>`). Redis: 1024 * 1024.
    pub max_multibulk_len: usize,
    /// Longest inline (telnet-style) command line. Redis: 64 KiB.
    pub max_inline_len: usize,
    /// Most bytes buffered for one connection while a request is incomplete.
    /// Redis: `client-query-buffer-limit`, 1 GiB.
    pub max_query_buffer: usize,
}

impl Limits {
    /// Redis's own defaults.
    pub const REDIS: Limits = Limits {
        max_bulk_len: 512 * 1024 * 1024,
        max_multibulk_len: 1024 * 1024,
        max_inline_len: 64 * 1024,
        max_query_buffer: 1024 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::REDIS
    }
}

/// Longest `*<n>` / `$<n>` header line we wait for before calling the stream malformed.
pub(crate) const MAX_HEADER_LINE: usize = 64 * 1024;
