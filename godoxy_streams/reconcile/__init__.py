"""The reconciler: keeps the known containers and static routes, and turns every change into an
applied plan.
"""
