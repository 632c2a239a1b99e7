use super::*;

fn parser() -> RequestParser {
    RequestParser::new(Limits::REDIS)
}

fn parse_all(bytes: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let mut p = parser();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(req) = p.parse(&mut buf)? {
        out.push(req.args().iter().map(|a| a.to_vec()).collect());
    }
    Ok(out)
}

#[test]
fn multibulk_requests_in_one_buffer() {
    let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
    assert_eq!(got, vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()]]);
}

#[test]
fn binary_safe_elements() {
    let got = parse_all(b"*2\r\n$3\r\nSET\r\n$4\r\n\0\r\n\n\r\n").unwrap();
    assert_eq!(got[0][1], b"\0\r\n\n");
}

#[test]
fn every_split_point_parses_the_same() {
    let stream: &[u8] = b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$5\r\nv\r\nv1\r\nPING\r\n*2\r\n$3\r\nGET\r\n$0\r\n\r\n";
    let whole = parse_all(stream).unwrap();
    assert_eq!(whole.len(), 3);
    for a in 0..stream.len() {
        for b in a..stream.len() {
            let mut p = parser();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&stream[..a], &stream[a..b], &stream[b..]] {
                buf.extend_from_slice(chunk);
                while let Some(req) = p.parse(&mut buf).unwrap() {
                    got.push(req.args().iter().map(|x| x.to_vec()).collect::<Vec<_>>());
                }
            }
            assert_eq!(got, whole, "split at {a},{b}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn incomplete_waits_without_consuming() {
    let mut p = parser();
    let partial = b"*2\r\n$3\r\nGET\r\n$5\r\nab";
    let mut buf = BytesMut::from(&partial[..]);
    assert_eq!(p.parse(&mut buf).unwrap(), None);
    assert_eq!(buf.len(), partial.len());
    buf.extend_from_slice(b"cde\r\n");
    let req = p.parse(&mut buf).unwrap().unwrap();
    assert_eq!(&req.args()[1][..], b"abcde");
}

#[test]
fn inline_commands_with_quotes() {
    let got = parse_all(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\nping\n\r\n").unwrap();
    assert_eq!(
        got[0],
        vec![b"set".to_vec(), b"a b".to_vec(), b"c'd".to_vec(), b"A\n".to_vec()]
    );
    assert_eq!(got[1], vec![b"ping".to_vec()]);
    assert_eq!(got.len(), 2);
    assert_eq!(parse_all(b"set \"abc\r\n"), Err(ProtocolError::UnbalancedQuotes));
}

#[test]
fn limits_are_enforced_before_buffering() {
    let limits = Limits {
        max_bulk_len: 10,
        max_multibulk_len: 3,
        max_inline_len: 8,
        max_query_buffer: 40,
    };
    let run = |bytes: &[u8]| {
        let mut p = RequestParser::new(limits);
        let mut buf = BytesMut::from(bytes);
        p.parse(&mut buf)
    };
    assert_eq!(run(b"*4\r\n"), Err(ProtocolError::InvalidMultibulkLength));
    assert_eq!(run(b"*x\r\n"), Err(ProtocolError::InvalidMultibulkLength));
    assert_eq!(run(b"*1\r\n$11\r\n"), Err(ProtocolError::InvalidBulkLength));
    assert_eq!(run(b"*1\r\n$-3\r\n"), Err(ProtocolError::InvalidBulkLength));
    assert_eq!(run(b"*1\r\n:1\r\n"), Err(ProtocolError::ExpectedBulk(':')));
    assert_eq!(run(b"*1\r\n$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
    assert_eq!(run(b"abcdefghijk"), Err(ProtocolError::InlineTooLong));
    assert!(run(b"abcdefg").unwrap().is_none());
    // A declared 2^62 element count never reaches an allocation.
    assert_eq!(
        run(b"*4611686018427387904\r\n"),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    let mut p = RequestParser::new(limits);
    let mut buf = BytesMut::from(&b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n012345678"[..]);
    assert_eq!(p.parse(&mut buf), Err(ProtocolError::QueryBufferExceeded(40)));
}

#[test]
fn header_lines_are_bounded() {
    let mut bytes = b"*".to_vec();
    bytes.extend(std::iter::repeat_n(b'1', MAX_HEADER_LINE + 2));
    assert_eq!(parse_all(&bytes), Err(ProtocolError::HeaderTooLong));
}

#[test]
fn http_is_refused() {
    assert_eq!(parse_all(b"GET / HTTP/1.1\r\n"), Err(ProtocolError::HttpOnRespPort));
    assert_eq!(
        parse_all(b"POST /api/cache/put HTTP/1.1\r\n"),
        Err(ProtocolError::HttpOnRespPort)
    );
    assert_eq!(parse_all(b"Host: localhost\r\n"), Err(ProtocolError::HttpOnRespPort));
    // GET with a key is an ordinary inline command.
    assert_eq!(parse_all(b"GET foo\r\n").unwrap().len(), 1);
}

#[test]
fn empty_arrays_are_skipped() {
    assert_eq!(
        parse_all(b"*0\r\n*-1\r\nPING\r\n").unwrap(),
        vec![vec![b"PING".to_vec()]]
    );
}

/// Property: any valid stream of requests, cut into chunks at random points, parses into the
/// same requests as the whole stream, and nothing is left over.
#[test]
fn random_streams_split_anywhere_parse_the_same() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for _ in 0..500 {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for _ in 0..rng.usize(1..20) {
            let args: Vec<Vec<u8>> = (0..rng.usize(1..6))
                .map(|_| (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect())
                .collect();
            if rng.u8(..) < 40
                && args
                    .iter()
                    .all(|a| !a.is_empty() && a.iter().all(|b| b.is_ascii_alphanumeric()))
            {
                // Inline form, as telnet users type it.
                stream.extend_from_slice(&args.join(&b' '));
                stream.extend_from_slice(b"\r\n");
            } else {
                stream.extend_from_slice(&crate::write::command(args.iter().map(|a| &a[..])));
            }
            want.push(args);
        }
        let mut p = parser();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(64));
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(req) = p.parse(&mut buf).unwrap() {
                got.push(req.args().iter().map(|a| a.to_vec()).collect::<Vec<_>>());
            }
        }
        assert_eq!(got, want);
        assert!(buf.is_empty());
    }
}

#[test]
fn a_plain_header_reads_as_the_general_path_reads_it() {
    // The one-pass reading of plain headers gives what finding the CRLF and parsing the
    // digits give, and leaves everything else (signs, partial or bad lines) to them.
    let cases: &[&[u8]] = &[
        b"$3\r\nSET",
        b"$0\r\n",
        b"$100\r\n",
        b"$007\r\n",
        b"$123456789012345678\r\n",
        b"$1234567890123456789\r\n",
        b"$-1\r\n",
        b"$\r\n",
        b"$12",
        b"$12\r",
        b"$12\rX",
        b"$1a\r\n",
        b"$+1\r\n",
        b"$ 1\r\n",
        b"$",
    ];
    for case in cases {
        let general = match find_crlf(case, 1, MAX_HEADER_LINE) {
            Ok(Some(end)) => parse_int(&case[1..end]).map(|n| (n, end)),
            _ => None,
        };
        match plain_header(case, 1) {
            Some((n, end)) => assert_eq!(Some((n as i64, end)), general, "{:?}", String::from_utf8_lossy(case)),
            None => assert!(
                general.is_none_or(|(n, _)| n < 0 || case[1..].starts_with(b"-") || case.len() > 20),
                "{:?} is plain but was not read as such",
                String::from_utf8_lossy(case)
            ),
        }
    }
    assert_eq!(plain_header(b"$100\r\n", 1), Some((100, 4)));
    assert_eq!(plain_header(b"*3\r\n$3", 1), Some((3, 2)));
    assert_eq!(plain_header(b"$-1\r\n", 1), None);
    assert_eq!(plain_header(b"$12\r", 1), None);
}
