//! ZooKeeper's own access control: with `--zk-auth-file`, every node a cluster creates is
//! readable and writable only by its digest user, as ZooKeeper's own client shows.

use kv_cluster::ZkAuth;

use crate::harness::TestCluster;
use crate::harness::redis_cli as cli;
use crate::harness::zk::zk_cli;

#[tokio::test]
async fn every_node_the_cluster_creates_is_closed_to_other_zookeeper_clients() {
    let mut c = TestCluster::start().await;
    let auth_file = c.dir.path().join("zk.auth");
    let secret = format!("kv:{}", fastrand::u64(..));
    std::fs::write(&auth_file, format!("{secret}\n")).unwrap();
    let auth = ZkAuth::parse(&secret).unwrap();
    let flag = auth_file.to_str().unwrap();

    c.start_server("s1", &["--zk-auth-file", flag]).await;
    c.start_gate(&["--zk-auth-file", flag]).await;
    c.wait_ready(&[("s1", 1)]).await;
    // A second gate seeds the cluster's users (the `users` node).
    let g = c.start_gate(&["--zk-auth-file", flag, "--requirepass", "pw"]).await;
    let gate = c.gates[g].resp.clone().expect("the gate announces its RESP address");
    assert_eq!(cli(&gate, &["--no-auth-warning", "-a", "pw", "SET", "k", "v"]), "OK");
    assert_eq!(cli(&gate, &["--no-auth-warning", "-a", "pw", "GET", "k"]), "v");

    // Every node, listed by an authenticated session.
    let zk = c.zk.connect_string();
    let listing = zk_cli(&zk, &[format!("addauth digest {secret}"), "ls -R /kvstore".into()]);
    let paths: Vec<&str> = listing.lines().filter(|l| l.starts_with("/kvstore")).collect();
    for want in [
        "/kvstore/default/ring",
        "/kvstore/default/users",
        "/kvstore/default/shards/s1/leader",
    ] {
        assert!(paths.contains(&want), "{want} not found in:\n{listing}");
    }

    // Each carries exactly one ACL: all rights for the cluster's digest user.
    let mut commands = vec![format!("addauth digest {secret}")];
    commands.extend(paths.iter().map(|p| format!("getAcl {p}")));
    let acls = zk_cli(&zk, &commands);
    let want = format!("'digest,'{}\n: cdrwa", auth.digest_id());
    assert_eq!(acls.matches(&want).count(), paths.len(), "ACLs read back:\n{acls}");
    assert!(!acls.contains("'world,'anyone"), "an open node:\n{acls}");

    // A session without the credentials can neither read nor change any of them.
    let mut commands = Vec::new();
    for p in &paths {
        commands.push(format!("get {p}"));
        commands.push(format!("set {p} tampered"));
        commands.push(format!("create {p}/intruder x"));
    }
    let refused = zk_cli(&zk, &commands);
    assert_eq!(
        refused.matches("Insufficient permission").count(),
        commands.len(),
        "an unauthenticated session got through:\n{refused}"
    );
    // And the cluster is untouched.
    assert_eq!(cli(&gate, &["--no-auth-warning", "-a", "pw", "GET", "k"]), "v");
}
