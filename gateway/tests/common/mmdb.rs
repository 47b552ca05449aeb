//! Writes a tiny MaxMind DB (`.mmdb`, format 2.0, IPv4, 24-bit records) mapping IPv4 networks
//! to `{"country": {"iso_code": CODE}}`, as GeoLite2-Country does: a real file the gateway's
//! `maxminddb` reader opens, for tests of `CHAT_GEOIP_DB`. Format:
//! <https://maxmind.github.io/MaxMind-DB/>.

/// The bytes of a database mapping each `(network, prefix length, country)`.
pub fn country_db(networks: &[([u8; 4], u8, &str)]) -> Vec<u8> {
    // The data section: one record per network.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (_, _, code) in networks {
        offsets.push(data.len() as u32);
        map(&mut data, 1);
        string(&mut data, "country");
        map(&mut data, 1);
        string(&mut data, "iso_code");
        string(&mut data, code);
    }
    // The tree: node 0 is the root; records are node numbers, `EMPTY`, or data pointers.
    const EMPTY: u32 = u32::MAX;
    let mut nodes: Vec<[u32; 2]> = vec![[EMPTY, EMPTY]];
    let mut leaves: Vec<(usize, usize, usize)> = Vec::new();
    for (i, (net, prefix, _)) in networks.iter().enumerate() {
        let bits = u32::from_be_bytes(*net);
        let mut node = 0;
        for depth in 0..*prefix as usize {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *prefix as usize {
                leaves.push((node, bit, i));
            } else {
                if nodes[node][bit] == EMPTY {
                    nodes.push([EMPTY, EMPTY]);
                    nodes[node][bit] = (nodes.len() - 1) as u32;
                }
                node = nodes[node][bit] as usize;
            }
        }
    }
    let node_count = nodes.len() as u32;
    for (node, bit, i) in leaves {
        nodes[node][bit] = node_count + 16 + offsets[i];
    }
    let mut out = Vec::new();
    for [left, right] in nodes {
        for record in [left, right] {
            let record = if record == EMPTY { node_count } else { record };
            out.extend_from_slice(&record.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint16(&mut out, 2);
    string(&mut out, "binary_format_minor_version");
    uint16(&mut out, 0);
    string(&mut out, "build_epoch");
    out.extend_from_slice(&[0x08, 0x02]); // uint64, 8 bytes
    out.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    string(&mut out, "database_type");
    string(&mut out, "GeoLite2-Country");
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "chat-gateway test fixture");
    string(&mut out, "ip_version");
    uint16(&mut out, 4);
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]); // array of 1
    string(&mut out, "en");
    string(&mut out, "node_count");
    out.push(0xC4); // uint32, 4 bytes
    out.extend_from_slice(&node_count.to_be_bytes());
    string(&mut out, "record_size");
    uint16(&mut out, 24);
    out
}

fn map(out: &mut Vec<u8>, entries: u8) {
    assert!(entries < 29);
    out.push(0xE0 | entries);
}

fn string(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 29, "short strings only");
    out.push(0x40 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn uint16(out: &mut Vec<u8>, n: u16) {
    out.push(0xA2);
    out.extend_from_slice(&n.to_be_bytes());
}
