"""Users: registration, argon2 password checks, and Ed25519-signed access tokens with a JWKS."""
