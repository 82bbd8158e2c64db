"""Data: list-file datasets, samplers, dataset verification, embedded generators."""
from .digits import ClutteredDigits, DigitDomains, cluttered_digits, digit_domains, target_subset
from .listfile import ListFileDataset, ListFileError, load_rgb, parse_list_file
from .samplers import IdentitySampler, RandomPairDataset, endless

__all__ = [
    "ClutteredDigits", "DigitDomains", "cluttered_digits", "digit_domains", "target_subset", "ListFileDataset",
    "ListFileError", "load_rgb", "parse_list_file", "IdentitySampler", "RandomPairDataset", "endless",
]
