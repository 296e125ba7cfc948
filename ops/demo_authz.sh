#!/bin/sh
# The procurement policy: the example model, tuples and policy (seeded by
# `sanctumctl up` on first start; `sanctumctl seed` waits for that, or does
# it), then three decisions about the po-drafter agent.
#   demo_authz.sh SANCTUMCTL
set -u
CTL=$1
echo "== authz: the procurement model, its tuples and the po.write policy =="
"$CTL" seed >/dev/null 2>&1 || { echo "seeding the example failed: sanctumctl seed"; exit 1; }
echo "agent:po-drafter is owned by user:erin; erin's manager carol may approve up to \$50,000,"
echo "carol's manager victor (VP Finance) up to \$1,000,000; po.write is automatic below \$10,000."
for amount in 520000 5000 2000000; do
    printf '\npo.write of $%s by agent:po-drafter on cost_center:engineering -> ' "$amount"
    "$CTL" authz decide agent:po-drafter po.write cost_center:engineering --context "{\"amount\": $amount}"
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 3 ] || exit 1
done
