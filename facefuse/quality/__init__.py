"""Measuring tools, apart from the product: the independent judge, quality reports, bench."""
