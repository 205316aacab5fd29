"""OPC UA server per station (issue 18): the OPC 40100-1 Machine Vision concepts an MES uses.

:mod:`vinspect.opcua.results` maps an inspection to a result (plain values, no asyncua);
:mod:`vinspect.opcua.server` is the only module that imports asyncua.
"""
