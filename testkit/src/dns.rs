//! A tiny DNS responder's reply, for tests that give containers a resolver
//! of their own (in a network namespace the test made).

use std::net::Ipv4Addr;

/// A reply to a one-question DNS query: the question, then an A record
/// with `ip` when an A record was asked (else no answer).
pub fn answer(query: &[u8], ip: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + *query.get(end)? as usize;
    }
    end += 5; // the root label, QTYPE, QCLASS
    let question = query.get(12..end)?;
    let is_a = question[question.len() - 4..question.len() - 2] == [0, 1];
    let mut out = query[..2].to_vec();
    out.extend([0x81, 0x80, 0, 1, 0, is_a as u8, 0, 0, 0, 0]);
    out.extend(question);
    if is_a {
        out.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend(ip.octets());
    }
    Some(out)
}
