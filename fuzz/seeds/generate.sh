#!/usr/bin/env bash
# Regenerates the seed corpora of the fuzz targets from real artefacts: keys,
# SSH signatures and KRLs made by ssh-keygen, the shipped policies, and ID
# tokens of the shape the test IdP issues. Committed outputs are used as they
# are; the constants below match ca-server/tests/untrusted_input/.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf ed25519 id_token krl policy proof subject_key
mkdir -p ed25519 id_token krl policy proof subject_key

b64url() { basenc --base64url -w0 | tr -d '='; }
# N bytes of the one byte given in hex.
repeat() { head -c "$1" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$2")"; }

# subject_key: every fixture key line (the accepted and the refused), a
# certificate, and fresh keys of every accepted type.
cp ../../tests/fixtures/keys/*.pub subject_key/
for spec in ed25519 ecdsa:256 ecdsa:384 ecdsa:521 rsa:2048 rsa:3072; do
  type=${spec%%:*}
  bits=${spec#*:}
  name=${spec/:/}
  if [ "$type" = "$spec" ]; then
    ssh-keygen -q -t "$type" -N '' -C "seed-$name" -f "$tmp/$name"
  else
    ssh-keygen -q -t "$type" -b "$bits" -N '' -C "seed-$name" -f "$tmp/$name"
  fi
  cp "$tmp/$name.pub" "subject_key/$name.pub"
done

# proof: SSH signatures by those keys over the proof message for the token
# of proof.rs (ca_proto::proof_message), and one in another namespace.
token="eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJmdXp6In0.c2lnbmF0dXJl"
token_digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1 | xxd -r -p | b64url)
for name in ed25519 ecdsa256 ecdsa384 ecdsa521 rsa2048 rsa3072; do
  key_digest=$(cut -d' ' -f2 "$tmp/$name.pub" | base64 -d | sha256sum | cut -d' ' -f1 | xxd -r -p | b64url)
  printf 'jit-ssh-pop-v1\n%s\n%s\n' "$token_digest" "$key_digest" > "$tmp/$name.msg"
  ssh-keygen -q -Y sign -n jit-ssh-pop-v1@jit-ssh -f "$tmp/$name" "$tmp/$name.msg"
  cp "$tmp/$name.msg.sig" "proof/$name.sig"
done
cp "$tmp/ed25519.msg" "$tmp/git.msg"
ssh-keygen -q -Y sign -n git -f "$tmp/ed25519" "$tmp/git.msg"
cp "$tmp/git.msg.sig" proof/ed25519-git-namespace.sig

# krl: KRLs made by ssh-keygen -k, one per kind of section and one with all.
ssh-keygen -q -t ed25519 -N '' -C seed-ca -f "$tmp/ca"
ssh-keygen -q -s "$tmp/ca" -I alice -n alice -z 42 -V +52w "$tmp/ed25519.pub"
: > "$tmp/empty.spec"
printf 'serial: 1\nserial: 7\nserial: 18446744073709551615\n' > "$tmp/serials.spec"
printf 'serial: 10-20\nserial: 1000-1999\n' > "$tmp/ranges.spec"
printf 'serial: 1\nserial: 3\nserial: 5\nserial: 7\nserial: 9\nserial: 64\n' > "$tmp/bitmap.spec"
printf 'id: alice\nid: bob@corp\n' > "$tmp/ids.spec"
{
  printf 'key: %s\n' "$(cat "$tmp/rsa2048.pub")"
  printf 'sha1: %s\n' "$(cat "$tmp/ecdsa256.pub")"
  printf 'sha256: %s\n' "$(cat "$tmp/ed25519.pub")"
  printf 'hash: %s\n' "$(ssh-keygen -l -f "$tmp/ecdsa384.pub" | cut -d' ' -f2)"
} > "$tmp/keys.spec"
for kind in empty serials ranges bitmap ids; do
  ssh-keygen -q -k -f "krl/$kind" -s "$tmp/ca.pub" -z 3 "$tmp/$kind.spec"
done
ssh-keygen -q -k -f krl/keys -z 4 "$tmp/keys.spec"
ssh-keygen -q -k -f krl/certificate -z 5 "$tmp/ed25519-cert.pub"
cat "$tmp"/{serials,ranges,ids}.spec > "$tmp/all.spec"
ssh-keygen -q -k -f krl/everything -s "$tmp/ca.pub" -z 6 "$tmp/all.spec"
ssh-keygen -q -k -u -f krl/everything -z 7 "$tmp/keys.spec"

# policy: the shipped policies.
cp ../../policies/*.toml policy/

# id_token: header and claims as the test IdP (oidc-provider) issues them,
# signed by the fuzz target (a leading 1); and compact tokens as they
# arrive (a leading 0), signed by no key the CA trusts.
now=1750000000
iss="https://idp.fuzz.example"
nonce="tFvZLTZ4hRZnJfcYHl0vaLG6AOSiZcXs4ZD08v4AvUk"
header='{"alg":"EdDSA","typ":"JWT","kid":"ed"}'
claims() {
  printf '{"sub":"alice-sub","email":"alice@corp.example","email_verified":true,'
  printf '"groups":["engineers","sre"],"name":"Alice","preferred_username":"alice",'
  printf '"nonce":"%s","at_hash":"x4Kp1yNcB7Mvoz0xD7A2aw","sid":"7b5f2b1e",' "$1"
  printf '"auth_time":%d,"aud":%s,"exp":%d,"iat":%d,"iss":"%s"%s}' \
    $((now - 10)) "$2" $((now + $3)) $((now - 10)) "$iss" "$4"
}
signed() { { printf '\1%s\0' "$header"; claims "$@"; } > "id_token/$name"; }
name=valid signed "$nonce" '"jit-ssh"' 300 ''
name=two-audiences signed "$nonce" '["jit-ssh","other"]' 300 ',"azp":"jit-ssh"'
name=expired signed "$nonce" '"jit-ssh"' -120 ''
name=another-nonce signed "someone-elses-nonce" '"jit-ssh"' 300 ''
{ printf '\1%s\0' "$header"; printf '{"sub":"ci","repository":"corp/app","aud":"jit-ssh","exp":%d,"iat":%d,"iss":"%s"}' \
  $((now + 300)) "$now" "$iss"; } > id_token/workload-no-nonce
signature=$(repeat 64 5a | b64url)
body=$(claims "$nonce" '"jit-ssh"' 300 '' | b64url)
for spec in EdDSA:ed RS256:rsa ES256:ec PS256:rsa none: HS256:ed EdDSA:unknown; do
  alg=${spec%%:*}
  kid=${spec#*:}
  head=$(printf '{"alg":"%s","typ":"JWT"%s}' "$alg" "${kid:+,\"kid\":\"$kid\"}" | b64url)
  { printf '\0'; printf '%s.%s.%s' "$head" "$body" "$signature"; } > "id_token/raw-$alg-${kid:-nokid}"
done
head=$(printf '{"alg":"EdDSA","kid":"ed","crit":["exp"]}' | b64url)
{ printf '\0'; printf '%s.%s.%s' "$head" "$body" "$signature"; } > id_token/raw-crit

# ed25519: crafted signatures (layout in ed25519.rs): honest; with torsion
# in R, in the key, in both; R of small order, plainly and respelled; S + L;
# another message; and raw all-zero and all-one bytes.
crafted() { { printf "\\1\\$(printf '%03o' "$1")\\$(printf '%03o' "$2")\\$(printf '%03o' "$3")"; repeat 32 11; repeat 32 22; printf 'header.claims'; } > "ed25519/$4"; }
crafted 0 0 0 honest
crafted 0 1 0 r-torsion-order-8
crafted 0 4 0 r-torsion-order-2
crafted 3 0 0 key-torsion
crafted 5 6 0 key-and-r-torsion
crafted 0 2 1 r-small-order
crafted 0 10 3 r-small-order-respelled
crafted 0 0 8 s-plus-l
crafted 0 0 16 other-message
{ printf '\0'; repeat 96 00; printf 'message'; } > ed25519/raw-zeros
{ printf '\0'; repeat 96 ff; printf 'message'; } > ed25519/raw-ones
