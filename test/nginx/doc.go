// Package nginx holds the test of the nginx recipes in deploy/nginx with a
// real nginx (Debian's package, /usr/sbin/nginx): the real pkid binary on a
// fresh database, client certificates for keys made with openssl, and nginx
// run from the very templates an operator installs, rendered into a
// temporary directory. For each recipe, ssl_ocsp (ocsp.conf) and ssl_crl
// (crl.conf, its file kept by deploy/systemd/pkid-crl-refresh), a valid
// certificate reaches the upstream and is refused once pkid revoked it;
// certificates of other CAs are refused. It also checks the claims the
// recipes' comments and README make: session resumption, ssl_ocsp_cache,
// "ssl_ocsp on", both CRLs being needed, and what happens when pkid is down.
// The package has no code of its own; the test skips, saying so, only when
// nginx is not installed.
package nginx
