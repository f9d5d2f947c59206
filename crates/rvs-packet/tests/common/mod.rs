//! Shared by the lab tests (`tests/lab.rs`, `tests/lab6.rs`).

/// UDP echo on ADDR:5353 (argv[1], IPv4 or IPv6) answering `LEN:SHA1`
/// padded to the request's length (so a large request gets a large,
/// fragmented reply). (DR binds the VIP so the reply's source is the VIP.)
pub const FRAG_ECHO: &str = "import socket,hashlib,sys\nf=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\ns=socket.socket(f,socket.SOCK_DGRAM)\ns.bind((sys.argv[1],5353))\nwhile True:\n d,a=s.recvfrom(65535)\n print(len(d),a[0],flush=True)\n r=('%d:%s:' % (len(d), hashlib.sha1(d).hexdigest())).encode()\n s.sendto(r+b'r'*max(0,len(d)-len(r)),a)\n";

/// Client: datagrams of 4000 bytes (the client's kernel fragments them,
/// MTU 1500) to VIP:5353 (argv[1], IPv4 or IPv6); prints one line per
/// datagram: whether the real server got it whole, the reply's length
/// and its source.
pub const FRAG_CLIENT: &str = "import socket,hashlib,os,sys\nf=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\nfor i in range(3):\n s=socket.socket(f,socket.SOCK_DGRAM)\n s.settimeout(3)\n s.connect((sys.argv[1],5353))\n d=os.urandom(4000)\n s.send(d)\n try:\n  r,a=s.recvfrom(65535)\n  ok=r.startswith(('%d:%s:' % (len(d), hashlib.sha1(d).hexdigest())).encode())\n  print('whole' if ok else 'mangled', len(r), a[0])\n except socket.timeout:\n  print('timeout')\n";
