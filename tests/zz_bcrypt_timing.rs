#[test]
fn timing() {
    let t = std::time::Instant::now();
    let h = bcrypt::hash("pw", 10).unwrap();
    let a = t.elapsed();
    let t = std::time::Instant::now();
    assert!(bcrypt::verify("pw", &h).unwrap());
    eprintln!("hash {:?} verify {:?}", a, t.elapsed());
}
