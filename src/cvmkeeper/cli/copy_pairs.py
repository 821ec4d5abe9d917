"""``validate --online``: region pairs the cloud refuses to copy between (issue #18).

Some (source, destination) pairs cannot copy at all (``SyncImages`` answers
``InvalidRegion.Unavailable`` or ``UnsupportedOperation.Region``). A run says so once per
run as an error; ``validate --online`` says it before the first run, with one
``SyncImages`` ``DryRun`` per pair a policy copies across (nothing is copied), using any
``NORMAL`` private image of the source region. A pair whose source holds no such image yet
cannot be asked: it is said so, not guessed.
"""

from __future__ import annotations

from cvmkeeper.cloud.client import CloudClient
from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.config import Setup
from cvmkeeper.core.ownership import OWN_IMAGE_TYPE
from cvmkeeper.executor.copies import PAIR_REFUSALS


def copy_pairs(setup: Setup) -> dict[tuple[str, str], list[str]]:
    """(source, destination) -> the policies copying across it, in order of mention."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for policy in setup.policies:
        for rule in policy.copies:
            for source in policy.regions:
                if source != rule.region:
                    pairs.setdefault((source, rule.region), []).append(policy.name)
    return pairs


def refused_pair_warnings(setup: Setup, client: CloudClient) -> list[str]:
    """A warning per pair the cloud refuses (or cannot be asked about yet)."""
    warnings: list[str] = []
    for (source, destination), policies in copy_pairs(setup).items():
        names = ", ".join(sorted(set(policies)))
        probe = next(
            (
                image
                for image in client.list_images(source)
                if image.image_type == OWN_IMAGE_TYPE and image.state.usable
            ),
            None,
        )
        if probe is None:
            warnings.append(
                f"policy {names}: cannot check that {source} may copy to {destination} "
                f"(no NORMAL image in {source} yet); the first run will say"
            )
            continue
        try:
            client.sync_dry_run(source, probe.image_id, destination)
        except CloudError as error:
            if error.code in PAIR_REFUSALS:
                warnings.append(
                    f"policy {names}: the cloud refuses copies from {source} to "
                    f"{destination} ({error.code}: {error.message}); every copy there will fail"
                )
    return warnings
