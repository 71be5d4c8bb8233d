"""groups.xml: group declarations, membership rules and how a client's groups are
resolved from them (spec/repository.md §1.1).
"""
import logging

from bcfg2_cherry.plugins.metadata.model import MetadataGroup

logger = logging.getLogger(__name__)

#: a resolution that has not settled after this many passes is cut short (a loop of
#: rules adding and removing each other); upstream would spin forever
MAX_PASSES = 100


def _is_true(element, attr):
    """Upstream reads group flags as exactly ``"true"``."""
    return element.get(attr, "false") == "true"


def _negated(element):
    return element.get("negate", "false").lower() == "true"


def _is_element(node):
    return isinstance(node.tag, str)


class GroupsData:
    """The parsed content of groups.xml (XIncludes already resolved).

    ``groups``: name -> MetadataGroup (first declaration wins); ``default``: the
    default group's name; ``rules``: group -> list of condition tuples, each condition
    ``(tag, name, negate)``, in ``order`` (the order of each group's first rule);
    ``removals``: group -> list of condition tuples for negated leaves.
    """

    def __init__(self, root, source="groups.xml"):
        self.source = source
        self.groups = {}
        self.default = None
        self.rules = {}
        self.order = []
        self.removals = {}
        #: names only ever used as rule targets inside top-level Client elements, or
        #: named by a childless Client element: plain groups (upstream fails to load)
        self.undeclared = set()
        self._declare(root)
        self._collect_rules(root)

    # -- parsing

    @staticmethod
    def _top_level(root, tag):
        """Elements ``tag`` whose parent is a ``Groups`` element, in document order."""
        return [el for el in root.iter(tag)
                if el.getparent() is not None and el.getparent().tag == "Groups"]

    def _declare(self, root):
        top = self._top_level(root, "Group")
        nested = []
        # elements themselves (not id()): lxml proxies only keep their identity
        # while referenced
        seen = set(top)
        for group in top:
            for el in group.iter("Group"):
                if el is not group and el not in seen:
                    seen.add(el)
                    nested.append(el)
        for el in top + nested:
            name = el.get("name")
            if not name:
                logger.error("%s: Group without a name at line %s; ignored",
                             self.source, el.sourceline)
                continue
            if name in self.groups:
                continue
            self.groups[name] = MetadataGroup(
                name,
                bundles=[b.get("name") for b in el if _is_element(b)
                         and b.tag == "Bundle" and b.get("name")],
                category=el.get("category") or None,
                is_profile=_is_true(el, "profile"),
                is_public=_is_true(el, "public"),
                is_default=_is_true(el, "default"))
            if _is_true(el, "default"):
                self.default = name

    def _collect_rules(self, root):
        containers = self._top_level(root, "Group") + self._top_level(root, "Client")
        seen = set()
        for container in containers:
            for el in container.iterdescendants():
                if not _is_element(el) or el.tag not in ("Group", "Client"):
                    continue
                if len(el):
                    if not any(_is_element(child) for child in el):
                        logger.warning(
                            "%s: %s %s at line %s holds only comments: it is a "
                            "conditional with nothing in it, not a membership rule",
                            self.source, el.tag, el.get("name"), el.sourceline)
                    continue
                if el in seen:
                    continue
                seen.add(el)
                self._add_rule(el)

    def _add_rule(self, el):
        name = el.get("name")
        if not name:
            logger.error("%s: %s without a name at line %s; ignored", self.source,
                         el.tag, el.sourceline)
            return
        conditions = []
        for parent in el.iterancestors():
            if parent.tag in ("Group", "Client"):
                conditions.append((parent.tag, parent.get("name"), _negated(parent)))
        conditions = tuple(reversed(conditions))
        if _negated(el):
            self.removals.setdefault(name, []).append(conditions)
            return
        if el.tag == "Client" and name not in self.groups:
            logger.warning("%s: childless <Client name=\"%s\"> at line %s is a rule "
                           "putting clients into a group of that name; a conditional "
                           "was probably meant", self.source, name, el.sourceline)
        if name not in self.groups:
            self.undeclared.add(name)
        if name not in self.rules:
            self.rules[name] = []
            self.order.append(name)
        self.rules[name].append(conditions)

    # -- resolution

    @staticmethod
    def _holds(conditions, client, groups):
        for tag, name, negate in conditions:
            if tag == "Group":
                value = name in groups
            else:
                value = name == client
            if value == negate:
                return False
        return True

    def resolve(self, client, groups, categories, table, warn):
        """Apply the rules to ``groups``/``categories`` (changed in place) until they
        settle: positive rules in order (a group of a claimed category is suppressed:
        ``warn(client, group, category, holder)``), then removals.

        ``table`` is the current group table (declarations plus dynamic groups).
        """
        for _ in range(MAX_PASSES):
            count = len(groups)
            new = []
            for name in self.order:
                if name in groups:
                    continue
                if not any(self._holds(cond, client, groups) for cond in self.rules[name]):
                    continue
                group = table.get(name)
                category = getattr(group, "category", None) if group is not None else None
                if category:
                    if category in categories:
                        warn(client, name, category, categories[category])
                        continue
                    categories[category] = name
                new.append(name)
            groups.update(new)
            remove = []
            for name, rules in self.removals.items():
                if name in groups and any(self._holds(cond, client, groups)
                                          for cond in rules):
                    remove.append(name)
            for name in remove:
                groups.discard(name)
                group = table.get(name)
                category = getattr(group, "category", None) if group is not None else None
                if category and categories.get(category) == name:
                    del categories[category]
            if len(groups) == count:
                return groups, categories
        logger.error("Group resolution for %s did not settle after %d passes: rules in "
                     "%s add and remove groups in a loop", client, MAX_PASSES,
                     self.source)
        return groups, categories

    def all_group_names(self):
        """Every name that groups.xml declares or uses in a rule."""
        return set(self.groups) | set(self.rules) | set(self.removals)
