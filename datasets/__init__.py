"""Datasets on the server side: versioned rows kept in the dataset tables of the store.

The HTTP API's ``/api/datasets`` routes and ``evalhouse datasets`` on a store it opens itself
both call :class:`Datasets`, so the two give the same answers. The SDK never imports this
package: it reaches datasets over the HTTP API and shares only the row checks of
:mod:`evalhouse.dataset_rows` with the server.

>>> datasets = Datasets(store)                                  # doctest: +SKIP
>>> datasets.append("qa", [{"input": "2+2", "expected": "4"}])   # doctest: +SKIP
{'name': 'qa', 'version': 1, 'rows': 1, 'changed': 1, ...}
"""

from __future__ import annotations

from evalhouse.datasets._rows import StoredRow, wire_rows
from evalhouse.datasets._service import DatasetNotFound, Datasets

__all__ = ["DatasetNotFound", "Datasets", "StoredRow", "wire_rows"]
