"""The GroupPatterns plugin: groups from the client's name (spec/repository.md §9)."""
import logging
import os
import re

from bcfg2_cherry import cache
from bcfg2_cherry.plugin.base import Plugin
from bcfg2_cherry.plugin.helpers import XMLFileBacked
from bcfg2_cherry.plugin.interfaces import Connector
from bcfg2_cherry.state import atomic_write

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"\[\[([\d\-,\s]+)\]\]")
_SUBST = re.compile(r"\$(\d+)")


class PatternError(ValueError):
    """A NamePattern or NameRange cannot be used."""


class DigitRanges:
    """Comma-separated numbers and ``a-b`` ranges (``a-`` is open-ended)."""

    def __init__(self, text):
        self.text = text
        self.ranges = []
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                if item.endswith("-"):
                    self.ranges.append((int(item[:-1]), None))
                elif "-" in item:
                    start, end = item.split("-", 1)
                    self.ranges.append((int(start), int(end)))
                else:
                    self.ranges.append((int(item), int(item)))
            except ValueError:
                raise PatternError("bad range %r in %r" % (item, text)) from None

    def __contains__(self, value):
        value = int(value)
        return any(value >= start and (end is None or value <= end)
                   for start, end in self.ranges)


class PatternMap:
    """One NamePattern (a regex searched in the name; ``$N`` in group names is the
    N-th captured group) or NameRange (``[[ranges]]`` are numbers in those ranges; the
    rest is a regex anchored at the start) with its groups."""

    def __init__(self, pattern=None, rangestr=None, groups=()):
        self.pattern = pattern
        self.rangestr = rangestr
        self.groups = list(groups)
        try:
            if pattern is not None:
                self._re = re.compile(pattern)
                self.process = self._process_pattern
            elif rangestr is not None:
                if "\\" in rangestr:
                    raise PatternError("backslashes are not allowed in NameRange %r"
                                       % rangestr)
                self.dranges = [DigitRanges(m) for m in _RANGE.findall(rangestr)]
                self._re = re.compile(_RANGE.sub(r"(\\d+)", rangestr))
                self.process = self._process_range
            else:
                raise PatternError("no NamePattern or NameRange")
        except re.error as err:
            raise PatternError("cannot compile %r: %s" % (pattern or rangestr,
                                                          err)) from None

    def _process_pattern(self, name):
        match = self._re.search(name)
        if not match:
            return None
        captured = match.groups()

        def substitute(found):
            index = int(found.group(1))
            if 1 <= index <= len(captured):
                return captured[index - 1] or ""
            return found.group(0)
        return [_SUBST.sub(substitute, group) for group in self.groups]

    def _process_range(self, name):
        match = self._re.match(name)
        if not match:
            return None
        for digits, ranges in zip(match.groups(), self.dranges):
            if digits not in ranges:
                return None
        return list(self.groups)

    def __str__(self):
        return "PatternMap: %s %s" % (self.pattern or self.rangestr, self.groups)


class PatternFile(XMLFileBacked):
    """``GroupPatterns/config.xml``; a change expires the metadata cache."""

    def __init__(self, filename, fam=None, core=None):
        self.patterns = []
        XMLFileBacked.__init__(self, filename, fam=fam, should_monitor=True, core=core)

    def _state_attributes(self):
        return XMLFileBacked._state_attributes(self) + ["patterns"]

    def Index(self):
        patterns = []
        for entry in self.xdata.iter("GroupPattern"):
            groups = [g.text.strip() for g in entry.findall("Group")
                      if g.text and g.text.strip()]
            for element, kind in ([(el, "pattern") for el in entry.findall("NamePattern")]
                                  + [(el, "range") for el in entry.findall("NameRange")]):
                text = (element.text or "").strip()
                try:
                    if kind == "pattern":
                        patterns.append(PatternMap(pattern=text, groups=groups))
                    else:
                        patterns.append(PatternMap(rangestr=text, groups=groups))
                except PatternError as err:
                    logger.error("GroupPatterns: %s line %s: %s", self.name,
                                 element.sourceline, err)
        self.patterns = patterns
        cache.expire("Metadata")

    def process_patterns(self, hostname):
        """Groups of every pattern that matches ``hostname``, in file order."""
        result = []
        for pattern in self.patterns:
            groups = pattern.process(hostname)
            if groups is not None:
                result.extend(groups)
        return result


class GroupPatterns(Plugin, Connector):
    """Adds groups to clients whose names match patterns (a Connector)."""

    def __init__(self, core):
        Plugin.__init__(self, core)
        path = os.path.join(self.data, "config.xml")
        if not os.path.exists(path):
            logger.warning("GroupPatterns: %s does not exist, creating it empty", path)
            atomic_write(path, "<GroupPatterns/>\n")
        self.config = PatternFile(path, fam=self.fam, core=core)

    def get_additional_groups(self, metadata):
        return self.config.process_patterns(metadata.hostname)
