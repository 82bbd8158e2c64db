"""Data: list-file datasets, samplers, dataset verification, embedded generators."""
from .digits import ClutteredDigits, DigitDomains, cluttered_digits, digit_domains
from .listfile import ListFileDataset, ListFileError, load_rgb, parse_list_file
from .samplers import IdentitySampler, RandomPairDataset, endless

__all__ = [
    "ClutteredDigits", "DigitDomains", "cluttered_digits", "digit_domains", "ListFileDataset",
    "ListFileError", "load_rgb", "parse_list_file", "IdentitySampler", "RandomPairDataset", "endless",
]
