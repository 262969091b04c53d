"""Tests of the demo's tabs (vitdense/web/tabs/): each tab's handlers called directly, no server."""
