#!/bin/sh
# Prints the keys one Berth installation shares between its replicas, as the
# `KEY=value` lines of an env file (`deploy/keys.sh > deploy/.env`). Run it once: new keys
# are a new installation (the master key opens every secret, the signing key signs the
# log's checkpoints, the administrator's token is its first API key).
set -eu
random_base64() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
echo "BERTH_MASTER_KEY=$(random_base64)"
echo "BERTH_SIGNING_KEY=$(random_base64)"
echo "BERTH_ADMIN_TOKEN=berth_$(random_hex)"
echo "POSTGRES_PASSWORD=$(random_hex)"
