"""Mapping the ML cluster's AM and roles onto PyFlink operators."""
