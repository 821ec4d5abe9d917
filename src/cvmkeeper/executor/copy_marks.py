"""cvmkeeper's tags on its copies, set through Tencent's Tag API (issue #18).

Nothing documents that ``SyncImages`` gives a copy the source's tags or description
(``SyncImagesRequest`` has no ``TagSpecification``; neither Terraform nor Packer tags a
copy), and a copy without them would be unmanaged: never rotated, filling the destination's
quota. So the copy phase tags every copy itself (``TagResources``, through the same client,
rate limits and retries as every call):

- right after ``SyncImages`` answers with the copy's id, with the ``Copy`` step's tags
  (``naming.copy_tags``: the source's ``cvmkeeper:*`` tags and ``cvmkeeper:copy-from``);
- at the start of every copy phase, each copy the destination holds that is recognised
  only by its source (``core.ownership.untagged_copies``: a run killed between the two
  calls, a tag call that failed, a cloud whose tags have not shown yet).

Until its tags show, a copy is recognised by its name and its source's record
(``core.ownership.classify_copy``), so it is never taken for an unmanaged image. A tag
call that fails is a warning, not an error: the copy exists and is recognised; the next run
tags it again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from cvmkeeper.cloud.errors import CloudError
from cvmkeeper.core.inventory import Inventory
from cvmkeeper.core.naming import NameFormat
from cvmkeeper.core.ownership import copy_origins, untagged_copies
from cvmkeeper.executor.region import RegionRun

log = logging.getLogger(__name__)

TAG_ACTION = "TagResources"


class CopyTagger:
    """Tags the copies of one destination region (see the module docstring)."""

    def __init__(self, run: RegionRun, fmt: NameFormat, policies: Sequence[str]) -> None:
        self._run = run
        self._fmt = fmt
        self._policies = list(policies)
        #: ids of the copies tagged by this run (never tagged twice in one run)
        self.tagged: set[str] = set()

    def tag(
        self,
        image_id: str,
        name: str,
        tags: Mapping[str, str],
        *,
        policies: Sequence[str],
        instance: str | None = None,
        slot: datetime | None = None,
    ) -> bool:
        """Give the copy ``image_id`` its ``tags``; ``False`` (with a warning) if refused."""
        region = self._run.region
        try:
            self._run.client.tag_resources(region, "image", [image_id], tags)
        except CloudError as error:
            self._run.warn(
                list(policies),
                TAG_ACTION,
                f"{name} ({image_id}): cannot tag the copy in {region}: {error.code}: "
                f"{error.message}; it is recognised by its source until a later run tags it",
                instance=instance,
                slot=slot,
                code=error.code,
                request_id=error.request_id,
            )
            return False
        except Exception as error:  # a tag call must never break the copy phase
            log.exception("TagResources of %s in %s failed unexpectedly", image_id, region)
            self._run.warn(list(policies), TAG_ACTION, f"{name} ({image_id}): {error}")
            return False
        self.tagged.add(image_id)
        return True

    def repair(self, destination: Inventory, sources: Mapping[str, Inventory]) -> int:
        """Tag every copy of ``destination`` recognised only by its source; the count
        tagged."""
        origins = copy_origins(sources.values(), self._fmt)
        done = 0
        for owned, tags in untagged_copies(destination.images, origins, self._fmt):
            if owned.image_id in self.tagged:
                continue
            self._run.say(
                f"{self._run.region}: tagging copy {owned.image.name} ({owned.image_id}), "
                "which carries no cvmkeeper tags yet"
            )
            done += self.tag(
                owned.image_id,
                owned.image.name,
                tags,
                policies=self._policies,
                instance=owned.instance_id,
                slot=owned.slot,
            )
        return done
