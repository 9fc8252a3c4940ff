"""What a selective restore asks for, against an archive's listing and partition tree (pure)."""

from __future__ import annotations

from pgkeep.pgtools.partitions import descendants, quoted_table, split_qualified
from pgkeep.pgtools.toc import missing_from_archive

LISTING = """;
; Selected TOC Entries:
;
5; 2615 16400 SCHEMA - Weird Schema postgres
214; 1259 16385 TABLE public events postgres
215; 1259 16388 TABLE public events_2025 postgres
216; 1259 16391 TABLE Weird Schema my table app user
3220; 0 0 TABLE ATTACH public events_2025 postgres
3378; 0 16391 TABLE DATA public events_2025 postgres
3225; 1259 16400 INDEX public events_at_idx postgres
""".splitlines()


def test_present_tables_and_schemas_pass_and_absent_ones_are_named_with_near_spellings() -> None:
    present = [("public", "events"), ("Weird Schema", "my table")]
    assert missing_from_archive(LISTING, present, ["public", "Weird Schema"]) == []
    assert missing_from_archive(LISTING, [("public", "Events"), ("public", "nope")], ["weird schema", "x"]) == [
        "public.Events (the backup has public.events)",
        "public.nope",
        "schema weird schema (the backup has Weird Schema)",
        "schema x",
    ]
    # An attachment or the data of a table is not its definition.
    assert missing_from_archive(LISTING, [("public", "events_at_idx")], []) == ["public.events_at_idx"]


def test_partitions_are_found_at_every_level_parents_first() -> None:
    attached = {
        "public.b": ("public.a", "ALTER ..."),
        '"S x"."c y"': ("public.b", "ALTER ..."),
        "public.d": ("public.a", "ALTER ..."),
        "public.other": ("public.z", "ALTER ..."),
    }
    assert descendants(["public.a"], attached) == ["public.b", "public.d", '"S x"."c y"']
    assert descendants(["public.other"], attached) == []
    assert split_qualified('"S x"."c ""y"""') == ("S x", 'c "y"')
    assert quoted_table('"S x"."c y"') == '"c y"'
    assert split_qualified("public.b") == ("public", "b")
