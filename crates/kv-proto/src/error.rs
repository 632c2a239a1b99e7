//! Protocol errors. A protocol error means the byte stream can no longer be trusted: the
//! receiver replies `-ERR Protocol error: ...` (when it is a server) and closes that
//! connection. Other connections are unaffected.

/// A malformed or over-limit byte stream. The `Display` text follows Redis's wording so that
/// existing tooling recognises it; callers must match on the variant, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<n>` with `n` not a number or above [`crate::Limits::max_multibulk_len`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$<n>` with `n` not a number or above [`crate::Limits::max_bulk_len`].
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An element of a request array was not a bulk string.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A header line (`*n`, `$n`) longer than any legal one.
    #[error("Protocol error: too big mbulk count string")]
    HeaderTooLong,
    /// An inline command longer than [`crate::Limits::max_inline_len`].
    #[error("Protocol error: too big inline request")]
    InlineTooLong,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    MissingCrlf,
    /// A reply frame with an unknown type byte.
    #[error("Protocol error: unknown reply type '{0}'")]
    UnknownType(char),
    /// An integer field that does not parse.
    #[error("Protocol error: invalid integer")]
    InvalidInteger,
    /// Reply arrays nested deeper than the parser allows.
    #[error("Protocol error: reply nested too deeply")]
    TooDeep,
    /// More unparsed bytes buffered than [`crate::Limits::max_query_buffer`].
    #[error("Protocol error: query buffer exceeds the limit of {0} bytes")]
    QueryBufferExceeded(usize),
    /// An HTTP request arrived on a RESP port.
    #[error("Protocol error: HTTP is not served on this port (use the HTTP port)")]
    HttpOnRespPort,
}
