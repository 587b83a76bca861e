"""The cross-site data transport: each site worker serves reads of its clusters' snapshots
over authenticated HTTP(S); the other site's worker pulls changed extents from it. Data
never passes through Temporal and never needs a path both sites share."""
