"""Generated sample datasets (fake, deterministic, never real people)."""

from __future__ import annotations

from stratus.datasets.employees import (
    EMPLOYEE_COLUMNS,
    EMPLOYEES_SCHEMA,
    generate_employees,
    write_employees_csv,
)

__all__ = ["EMPLOYEES_SCHEMA", "EMPLOYEE_COLUMNS", "generate_employees", "write_employees_csv"]
