# cdef contract of aeronpy._ingress: the leader's decode of client ingress without message objects.
cpdef object session_message_fields(object buf)
